"""Operations: schedules, run leases, API budgets, alerts, run history and logs."""
