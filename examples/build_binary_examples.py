"""Regenerate the binary example documents (``service-manual.pdf``, ``returns-policy.docx``).

Run from anywhere: ``python examples/build_binary_examples.py``. Needs the ``dev`` extra
(fpdf2) and python-docx. Dates are fixed so the PDF is byte-for-byte reproducible.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

from docx import Document
from fpdf import FPDF

HERE = Path(__file__).resolve().parent
FIXED_DATE = dt.datetime(2025, 1, 15, 9, 0, tzinfo=dt.UTC)

# Each page: (heading, [paragraphs]). Core PDF fonts are latin-1 only, hence plain hyphens.
MANUAL_PAGES: list[tuple[str, list[str]]] = [
    (
        "Lumen Cycles Service Manual",
        [
            "Edition 3, for the Metro, Aero, Trail and Cargo ranges built from 2024 onwards. "
            "This manual is written for authorised Lumen dealers and experienced home "
            "mechanics. Work on the electrical system must only be done with the battery "
            "removed.",
            "Required tools: metric hex keys from 2 to 10 mm, T25 Torx key, a torque wrench "
            "covering 2 to 60 Nm, a pedal spanner, a disc brake bleed kit for mineral oil, "
            "and the Lumen Service Dongle for reading error logs.",
            "Service intervals: the first service is due after 300 km or 3 months. After "
            "that, service every 2,000 km or once a year, whichever comes first. Cargo Duo "
            "bikes used for deliveries should be serviced every 1,000 km.",
            "Safety: always remove the battery before touching the motor, wiring or display. "
            "Capacitors in the controller can hold a charge for about 30 seconds after the "
            "battery is removed.",
        ],
    ),
    (
        "Brakes",
        [
            "All Lumen bikes use hydraulic disc brakes filled with mineral oil. Never use "
            "DOT brake fluid: it destroys the seals.",
            "Pad wear: replace the brake pads when the friction material is thinner than "
            "1.5 mm, or sooner if the pads are contaminated with oil. Always replace pads in "
            "pairs on the same wheel.",
            "Rotor wear: the standard rotor is 2.0 mm thick when new. Replace it when it "
            "measures 1.8 mm or less at any point, or if it is bent by more than 0.5 mm.",
            "Bedding in: after fitting new pads, ride at about 20 km/h and brake firmly to "
            "walking pace 20 times, without locking the wheel.",
            "Bleeding: bleed the brakes when the lever feels spongy or touches the "
            "handlebar. Use the bleed kit syringe and push oil from the caliper up to the "
            "lever until no bubbles appear.",
        ],
    ),
    (
        "Torque Specifications",
        [
            "Tighten every bolt with a calibrated torque wrench. Carbon parts are not used on "
            "current Lumen bikes, but the stem and handlebar clamps are still easy to "
            "overtighten.",
            "Stem faceplate bolts: 5 Nm, tightened in a cross pattern.",
            "Stem steerer clamp bolts: 6 Nm.",
            "Seat post clamp: 6 Nm.",
            "Saddle rail clamp: 12 Nm.",
            "Brake caliper mounting bolts: 8 Nm.",
            "Disc rotor bolts (T25): 6 Nm, with threadlocker.",
            "Pedals: 35 Nm.",
            "Crank arm bolts (mid-drive models): 38 Nm.",
            "Rear hub motor axle nuts: 40 Nm. Check the torque washers are seated in the "
            "dropouts before tightening.",
            "Motor mounting bolts (mid-drive models): 10 Nm, with medium-strength threadlocker.",
            "Battery lock cylinder screws: 2 Nm.",
        ],
    ),
    (
        "Error Codes and Firmware",
        [
            "The display shows an error code when the controller detects a fault. Assist is "
            "switched off until the cause is removed and the system is restarted.",
            "E07 - Torque sensor signal lost. Check the sensor connector at the bottom "
            "bracket, then recalibrate with the Service Dongle. If the code returns, replace "
            "the torque sensor.",
            "E09 - Motor overheat protection. Let the motor cool for 20 minutes. Repeated "
            "E09 on long climbs with the Boost level is normal on the Cargo Duo under full "
            "load.",
            "E12 - Battery communication fault or BMS lock. Reseat the battery and clean the "
            "contacts. A pack that was deeply discharged stays locked and must be sent to a "
            "service centre.",
            "E21 - Speed sensor signal missing. Check the spoke magnet is within 5 mm of the "
            "sensor.",
            "Firmware: install updates with the Lumen Ride app or the Service Dongle. The "
            "current release is version 4.2, which adds smoother Tour mode ramping.",
        ],
    ),
]

RETURNS_SECTIONS: list[tuple[str, list[str]]] = [
    (
        "Your Right to Return",
        [
            "If your new Lumen bike is not right for you, you can return it within 45 days "
            "of delivery for a refund. This is longer than the legal minimum because we "
            "would rather you ride a bike you love.",
            "Bikes must be returned complete, with the battery, charger, keys and "
            "documents. The original box is helpful but not required.",
        ],
    ),
    (
        "Condition of Returned Bikes",
        [
            "Bikes ridden less than 50 km are refunded in full.",
            "Bikes ridden more than 50 km are accepted, but a 10% restocking fee is deducted "
            "from the refund to cover inspection and resale as a certified used bike.",
            "We read the distance from the motor controller, so there is no need to send a "
            "photo of the display.",
        ],
    ),
    (
        "How to Start a Return",
        [
            "Start the return in the Lumen Ride app under Orders > Return, or email "
            "returns@lumencycles.example with your order number.",
            "We collect the bike from your address free of charge in Germany, the "
            "Netherlands and the UK. Elsewhere, we send a prepaid label for a courier drop-off.",
        ],
    ),
    (
        "Refunds",
        [
            "Refunds are paid to the original payment method within 14 business days of the "
            "bike arriving at our warehouse.",
        ],
    ),
    (
        "Exceptions",
        [
            "Custom builds with a non-standard colour or component choice cannot be "
            "returned unless they are faulty.",
            "Accessories can be returned unused within 30 days in their original packaging.",
            "Faulty products are handled under the Lumen Cycles Limited Warranty, not this policy.",
        ],
    ),
]

REFUND_TABLE = [
    ("Situation", "Refund"),
    ("Ridden under 50 km", "100% of the price paid"),
    ("Ridden over 50 km", "90% of the price paid"),
    ("Missing battery or charger", "Cost of the part is deducted"),
]


class _ManualPDF(FPDF):
    """Service manual layout: a running footer with the page number."""

    def footer(self) -> None:
        """Print the manual name and page number at the bottom of every page."""
        self.set_y(-15)
        self.set_font("Helvetica", size=8)
        self.cell(0, 10, f"Lumen Cycles Service Manual - Page {self.page_no()}", align="C")


def build_pdf(path: Path) -> None:
    """Write the 4-page service manual, one topic per page."""
    pdf = _ManualPDF(format="A4")
    pdf.set_title("Lumen Cycles Service Manual")
    pdf.set_author("Lumen Cycles Technical Services")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_auto_page_break(auto=True, margin=20)
    for heading, paragraphs in MANUAL_PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def build_docx(path: Path) -> None:
    """Write the returns policy with a Title, Heading 1 sections and a refund table."""
    document = Document()
    document.core_properties.title = "Lumen Cycles Returns Policy"
    document.core_properties.author = "Lumen Cycles Customer Care"
    document.core_properties.created = FIXED_DATE.replace(tzinfo=None)
    document.core_properties.modified = FIXED_DATE.replace(tzinfo=None)
    document.add_heading("Lumen Cycles Returns Policy", level=0)
    document.add_paragraph("Valid for orders placed on lumencycles.example from 1 January 2025.")
    for heading, paragraphs in RETURNS_SECTIONS:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
        if heading == "Refunds":
            document.add_heading("Refund Amounts", level=2)
            table = document.add_table(rows=0, cols=2)
            for situation, refund in REFUND_TABLE:
                cells = table.add_row().cells
                cells[0].text, cells[1].text = situation, refund
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_with_fixed_timestamps(buffer.getvalue()))


def _with_fixed_timestamps(archive: bytes) -> bytes:
    """Rewrite zip entries with a fixed date; python-docx stamps them with the current time."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def main() -> None:
    """Build both files next to this script."""
    build_pdf(HERE / "docs" / "service-manual.pdf")
    build_docx(HERE / "docs" / "returns-policy.docx")
    print(f"wrote {HERE / 'service-manual.pdf'} and {HERE / 'returns-policy.docx'}")


if __name__ == "__main__":
    main()
