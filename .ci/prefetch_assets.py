"""Fill solara's CDN cache from the npm registry, for machines that reach npm but not the
CDN (CI here). Solara serves cached files itself, so the page then loads offline.

Run: .venv/bin/python .ci/prefetch_assets.py  (a no-op once every package is cached)

It lives with the CI scripts, not in the package: fetching JavaScript is the test
machine's concern, not something a nudgesim user's install should carry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def cdn_packages() -> list[str]:
    """npm packages (name@version) that solara's page and widgets load from its CDN: found
    in solara's own templates and Vue files, so a solara upgrade needs no change here."""
    import solara
    import solara.server.settings as settings

    pattern = re.compile(r"cdn(?:\}\}|\(\)\}|\})?/((?:@[\w.-]+/)?[\w.-]+@\d+\.\d+\.\d+[\w.+-]*)/",
                         re.IGNORECASE)
    root = Path(solara.__file__).parent
    found = {settings.assets.fontawesome_path.strip("/").split("/")[0]}
    sources = [*root.glob("server/templates/*.j2"), *root.glob("widgets/vue/*.vue"),
               *root.glob("components/*.py"), *root.glob("components/*.vue")]
    for f in sources:
        found.update(pattern.findall(f.read_text(encoding="utf-8")))
    return sorted(found)


def prefetch_assets() -> list[str]:
    """Fetch every CDN package missing from solara's cache; returns those fetched."""
    import solara.server.settings as settings

    cache = Path(settings.assets.proxy_cache_dir)
    missing = [p for p in cdn_packages() if not (cache / p).is_dir()]
    if missing and shutil.which("npm") is None:
        raise SystemExit(f"prefetch_assets: needs npm to fetch {missing}; install Node.js/npm")
    for package in missing:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", package, "--pack-destination", tmp, "--silent"],
                           check=True, stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("*.tgz")
            staging = Path(tmp) / "x"
            with tarfile.open(tarball) as tar:
                tar.extractall(staging, filter="data")
            (cache / package).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging / "package"), str(cache / package))  # atomic-enough
    return missing


def main() -> int:
    fetched = prefetch_assets()
    print(f"prefetch_assets: {len(fetched)} asset package(s) fetched"
          + (f": {', '.join(fetched)}" if fetched else " (all cached)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
