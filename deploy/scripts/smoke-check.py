"""Smoke-check a running GAN service from inside its container (stdlib only: no httpx there).

    python3 smoke-check.py [BASE_URL]      # default http://127.0.0.1:$BENTOML_PORT (3000)

GETs the probes, POSTs /generate {"seed": 42, "n": 2}, checks both PNGs, reads /metrics.
Exits non-zero on the first failure.
"""

import base64
import json
import os
import sys
import urllib.request

PNG = b"\x89PNG\r\n\x1a\n"


def main() -> int:
    default = f"http://127.0.0.1:{os.environ.get('BENTOML_PORT', '3000')}"
    base = sys.argv[1] if len(sys.argv) > 1 else default
    for path in ("/livez", "/readyz"):
        with urllib.request.urlopen(base + path, timeout=5) as reply:
            print(path, reply.status)
    request = urllib.request.Request(
        base + "/generate",
        data=json.dumps({"seed": 42, "n": 2}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        body = json.load(reply)
        status = reply.status
    pngs = [base64.b64decode(image["png"]) for image in body["images"]]
    assert len(pngs) == 2 and all(p.startswith(PNG) for p in pngs), body
    seeds = [image["seed"] for image in body["images"]]
    size = f"{body['width']}x{body['height']}"
    print("/generate", status, body["model"], size, "seeds", seeds, "PNGs", [len(p) for p in pngs])
    with urllib.request.urlopen(base + "/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    names = sorted({line.split("{")[0].split(" ")[0] for line in lines if line.startswith("gan_")})
    print("/metrics", len(lines), "lines,", len(names), "gan_* series, e.g.", names[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
