from kdcore.strategies.base import (
    TEMPERATURE_SCHEDULES,
    WEIGHTINGS,
    TemperatureSchedule,
    Weighting,
    register_schedule,
    register_weighting,
)

__all__ = ["TEMPERATURE_SCHEDULES", "WEIGHTINGS", "TemperatureSchedule", "Weighting",
           "register_schedule", "register_weighting"]
