"""Fetches the uv binary from a PEP 503 package index with Python's standard library alone.

A fresh Ubuntu or Debian image has python3 but neither pip nor venv support (python3-venv); uv brings both a
venv and an installer, so the bootstrap needs no apt and no network but the package index. The newest uv wheel
for this machine is taken, its sha256 checked when the index gives one (PyPI does), and its `uv` executable
written to DEST.

    python3 fetch_uv.py --index-url https://pypi.org/simple/ --dest ~/.ray-cluster/bin/uv
"""

import argparse
import hashlib
import html.parser
import io
import os
import platform
import re
import sys
import urllib.parse
import urllib.request
import zipfile

WHEEL = re.compile(r"^uv-(?P<version>[0-9][^-]*)-py3-none-(?P<platforms>[^/]+)\.whl$")


class Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def pick_wheel(page_url: str, page: str, machine: str) -> tuple[str, str, str]:
    """The newest glibc wheel for this machine: (url, filename, sha256 or "")."""
    parser = Links()
    parser.feed(page)
    candidates = []
    for href in parser.hrefs:
        url = urllib.parse.urljoin(page_url, href)
        path, _, fragment = url.partition("#")
        name = urllib.parse.unquote(path.rsplit("/", 1)[-1])
        match = WHEEL.match(name)
        if not match:
            continue
        platforms = match["platforms"].split(".")
        if any(p.startswith("manylinux") and p.endswith("_" + machine) for p in platforms):
            digest = fragment[len("sha256="):] if fragment.startswith("sha256=") else ""
            candidates.append((version_key(match["version"]), path, name, digest))
    if not candidates:
        sys.exit(f"fetch_uv: error: no uv wheel for linux {machine} at {page_url}")
    _, url, name, digest = max(candidates)
    return url, name, digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-url", default="https://pypi.org/simple/", help="PEP 503 index")
    parser.add_argument("--dest", required=True, help="path of the uv executable to write")
    args = parser.parse_args()

    page_url = args.index_url.rstrip("/") + "/uv/"
    try:
        with urllib.request.urlopen(page_url, timeout=60) as response:
            page = response.read().decode("utf-8", "replace")
        url, name, digest = pick_wheel(page_url, page, platform.machine())
        with urllib.request.urlopen(url, timeout=300) as response:
            wheel = response.read()
    except OSError as e:
        sys.exit(f"fetch_uv: error: cannot fetch uv from {page_url}: {e}")
    if digest and hashlib.sha256(wheel).hexdigest() != digest:
        sys.exit(f"fetch_uv: error: {name} does not match the sha256 the index gives")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        member = next((m for m in archive.namelist() if re.fullmatch(r"uv-[^/]+\.data/scripts/uv", m)), None)
        if member is None:
            sys.exit(f"fetch_uv: error: {name} has no uv executable")
        data = archive.read(member)
    os.makedirs(os.path.dirname(os.path.abspath(args.dest)), exist_ok=True)
    partial = args.dest + ".partial"
    with open(partial, "wb") as out:
        out.write(data)
    os.chmod(partial, 0o755)
    os.replace(partial, args.dest)
    print(f"fetch_uv: {name} -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
