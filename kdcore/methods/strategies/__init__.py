from kdcore.methods.strategies.base import (
    TEMPERATURE_SCHEDULES,
    WEIGHTINGS,
    TemperatureSchedule,
    Weighting,
    register_schedule,
    register_weighting,
)

__all__ = ["TEMPERATURE_SCHEDULES", "WEIGHTINGS", "TemperatureSchedule", "Weighting",
           "register_schedule", "register_weighting"]

from kdcore.methods.strategies import adaptive  # noqa: E402,F401  (registers uncertainty, confidence, c2kd)
