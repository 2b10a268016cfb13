"""The notification sink: schedule, preferences, rate limits, channels, the shell."""
