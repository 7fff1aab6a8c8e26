"""A staged ramp for the livechat load test: ``--livechat-ramp END_S:USERS:RATE,...``.

Until ``END_S`` seconds into the run, move toward ``USERS`` users at ``RATE`` users per second; after
the last stage the run stops. Load it next to the locustfile:
``-f loadtest/locustfile.py,loadtest/ramp.py --livechat-ramp 60:500:25,180:2000:50,240:2000:50``.
"""

from __future__ import annotations

from locust import LoadTestShape


def parse_stages(spec: str) -> list[tuple[float, int, float]]:
    stages: list[tuple[float, int, float]] = []
    for part in spec.split(","):
        try:
            end_s, users, rate = part.split(":")
            stage = (float(end_s), int(users), float(rate))
        except ValueError:
            raise ValueError(f"--livechat-ramp stage {part!r} is not END_S:USERS:RATE") from None
        if stage[1] < 0 or stage[2] <= 0 or (stages and stage[0] <= stages[-1][0]):
            raise ValueError(f"--livechat-ramp stage {part!r}: users >= 0, rate > 0, END_S increasing")
        stages.append(stage)
    return stages


class StagedRamp(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        if options is None or not options.livechat_ramp:
            raise ValueError("loadtest/ramp.py needs --livechat-ramp END_S:USERS:RATE,...")
        run_time = self.get_run_time()
        for end_s, users, rate in parse_stages(options.livechat_ramp):
            if run_time < end_s:
                return users, rate
        return None
