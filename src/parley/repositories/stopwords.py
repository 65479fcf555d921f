"""English function words left out of keyword queries.

OR-ing every word of a question makes "how do I …" match most chunks of a collection: the
keyword side then ranks by noise and the query scans far more rows than it needs. Only words
that carry no topic are listed; a query made of nothing else keeps its words.
"""

from __future__ import annotations

# One readable block rather than 150 quoted literals.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either
    else ever few for from further get gets got had has have having he her here hers herself
    him himself his how i if in into is it its itself just me might more most much must my
    myself no nor not now of off on once only or other our ours ourselves out over own same
    shall she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up upon us very was we were what when where
    which while who whom whose why will with within without would you your yours yourself
    yourselves
    """.split()  # noqa: SIM905
)
