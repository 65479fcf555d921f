"""Build the Parley pydoc eval corpus from Debian's python3.11-doc package.

Usage: python eval/pydoc/build_corpus.py OUT_DIR [--deb PATH]

Downloads ``python3.11-doc=3.11.2-6+deb12u9`` with ``apt-get download`` (unless
``--deb`` gives a local .deb), checks its sha256, extracts it with
``dpkg-deb -x`` and copies the HTML pages under ``usr/share/doc/python3.11/html/``
into OUT_DIR with their relative paths, leaving out static assets, sources,
index pages, search and the changelog. Stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "python3.11-doc"
VERSION = "3.11.2-6+deb12u9"
SHA256 = "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be"
HTML_ROOT = Path("usr/share/doc/python3.11/html")
EXCLUDED_DIRS = {"_static", "_sources", "_images", "_downloads"}
EXCLUDED_PAGES = {"py-modindex.html", "search.html", "whatsnew/changelog.html"}


def sha256_of(path: Path) -> str:
    """Return the hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_deb(workdir: Path) -> Path:
    """Fetch the pinned .deb into workdir with apt-get and return its path."""
    subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=workdir, check=True)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download produced no {PACKAGE} .deb")
    return debs[0]


def is_excluded(rel: Path) -> bool:
    """True for pages that are index, search, changelog or asset noise."""
    if rel.parts and rel.parts[0] in EXCLUDED_DIRS:
        return True
    return rel.name.startswith("genindex") or rel.as_posix() in EXCLUDED_PAGES


def copy_pages(html_root: Path, out_dir: Path) -> int:
    """Copy kept .html pages from html_root into out_dir; return the count."""
    written = 0
    for page in sorted(html_root.rglob("*.html")):
        rel = page.relative_to(html_root)
        if is_excluded(rel):
            continue
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target)
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, verify and extract the package, write the corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the HTML pages into")
    parser.add_argument("--deb", type=Path, help="use this local .deb instead of apt-get download")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pydoc-") as tmp:
        workdir = Path(tmp)
        deb = args.deb if args.deb else download_deb(workdir)
        actual = sha256_of(deb)
        if actual != SHA256:
            raise SystemExit(f"sha256 mismatch for {deb}: got {actual}, want {SHA256}")
        extracted = workdir / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
        html_root = extracted / HTML_ROOT
        if not html_root.is_dir():
            raise SystemExit(f"{HTML_ROOT} not found in {deb}")
        count = copy_pages(html_root, args.out_dir)
    print(f"wrote {count} pages to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
