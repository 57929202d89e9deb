"""Builds ec2ops/local/data/spot_market_us-east-1.json from ../shared/data/spot (run by hand; output committed).

Sources (Apache-2.0, see ../shared/data/README.md): SpotLake pool snapshot 2022-07-12 (spot price, placement
score, interruption grade per type x AZ id), spot-checker placement score buckets (SPS means), and the Spot
Instance Advisor feed 2025-06 (savings vs on-demand and interruption band per type) for types newer than 2022.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

REGION = "us-east-1"


def main(shared: Path, out: Path, advisor_out: Path) -> None:
    spot = shared / "data" / "spot"
    pools: dict[str, dict[str, dict[str, float]]] = {}
    with (spot / "spotlake-pools-2022-07-12.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Region"] != REGION:
                continue
            pools.setdefault(row["InstanceType"], {})[row["AZ"]] = {
                "spot_price": float(row["SpotPrice"]),
                "sps": float(row["SPS"]),
                "interruption_grade": float(row["IF"]),
            }
    for bucket in sorted((spot / "placement-score-buckets").glob(f"{REGION}_sps_*.csv")):
        with bucket.open() as handle:
            for row in csv.DictReader(handle):
                pool = pools.setdefault(row["InstanceType"], {}).setdefault(
                    row["AZ"], {"spot_price": float(row["SpotPrice"]), "interruption_grade": 2.0}
                )
                pool["sps"] = round(float(row["SPS_Mean"]), 3)
    advisor = json.loads((spot / "spot-advisor-2025-06.json").read_text())
    linux = advisor["spot_advisor"][REGION]["Linux"]
    data = {
        "region": REGION,
        "sources": [
            "SpotLake pools 2022-07-12 (ddps-lab/spot-checker, Apache-2.0)",
            "spot-checker placement score buckets (Apache-2.0)",
            "AWS Spot Instance Advisor feed 2025-06 via alexei-led/spotinfo (Apache-2.0)",
        ],
        "interruption_bands": [r["label"] for r in advisor["ranges"]],
        "pools": pools,
        "advisor": {t: {"savings_pct": v["s"], "interruption_band": v["r"]} for t, v in sorted(linux.items())},
    }
    out.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
    print(f"{out}: {sum(len(v) for v in pools.values())} pools, {len(linux)} advisor types")
    # The spot failover Lambdas rank pools by the same Advisor bands (no API serves them).
    bands = {
        "region": REGION,
        "source": "AWS Spot Instance Advisor feed 2025-06 via alexei-led/spotinfo (Apache-2.0)",
        "interruption_bands": data["interruption_bands"],
        "band_by_type": {t: v["r"] for t, v in sorted(linux.items())},
    }
    advisor_out.write_text(json.dumps(bands, sort_keys=True, separators=(",", ":")))
    print(f"{advisor_out}: {len(linux)} types")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared",
        root / "ec2ops/local/data/spot_market_us-east-1.json",
        root / "lambdas/ec2ops_lambda/data/spot_interruption_bands_us-east-1.json",
    )
