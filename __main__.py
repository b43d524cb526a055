"""The flatcar-infra stack program: ``pulumi up --stack local|digitalocean|aws``.

Everything lives in ``flatcar_infra.components.stack`` so other projects and the tests run the
same code; the machines come from ``stacks/Pulumi.<stack>.yaml``.
"""

from pathlib import Path

from flatcar_infra.components.stack import main

main(Path(__file__).resolve().parent)
