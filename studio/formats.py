"""Files artists have that the studio does not read, told apart by their first bytes so that each
gets a reason saying what to do instead of "not an image".

Photoshop files are refused although Pillow opens some: it reads only the flattened copy a .psd may
carry (Photoshop writes a blank one when "Maximize compatibility" is off) and no 16-bit ones, so an
export is the only way to be sure the painting is what gets learned.
"""
from __future__ import annotations

# ISO base media "ftyp" brands of HEIF stills (as iPhones save photos). AVIF shares the box and
# the generic "mif1" brand, but Pillow reads AVIF: only these are refused.
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
AVIF_BRANDS = {b"avif", b"avis"}

PSD = "Photoshop .psd files are not supported — export as PNG or JPEG"
HEIC = "HEIC photos (as iPhones take them) are not supported — export as JPEG or PNG"
SVG = "SVG drawings are not supported (they are drawn from shapes, not pixels) — export as PNG"
PDF = "PDF files are not supported — export the page as PNG or JPEG"
XCF = "GIMP .xcf files are not supported — export as PNG or JPEG"
KRITA = "Krita .kra files are not supported — export as PNG or JPEG"
REASONS = (PSD, HEIC, SVG, PDF, XCF, KRITA)


def unsupported_format(data: bytes) -> str | None:
    """The reason a file of this kind is not taken, or None if it is not one of these kinds."""
    if data.startswith(b"8BPS"):                       # .psd and the large-document .psb
        return PSD
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"gimp xcf"):
        return XCF
    if data.startswith(b"PK\x03\x04") and b"application/x-krita" in data[:100]:   # its first entry, "mimetype"
        return KRITA
    if _is_heic(data):
        return HEIC
    if _is_svg(data):
        return SVG
    return None


def _is_heic(data: bytes) -> bool:
    if data[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(data[:4], "big")
    brands = {data[i:i + 4] for i in range(8, min(box_size, len(data), 256), 4)}   # major, version, compatible
    return bool(brands & HEIC_BRANDS) and not brands & AVIF_BRANDS


def _is_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in head
