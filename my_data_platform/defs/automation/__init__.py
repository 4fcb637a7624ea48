"""Automation: landing sensors, declarative refresh, the nightly dataset schedule, alerts."""
