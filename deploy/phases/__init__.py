"""The deploy procedure, one async function per phase.

Each phase takes a `Context`, does one step on every host (fanning out with the
environment's parallelism) and records what it learned in `ctx.deployment`. Every
phase can run again on the same record without applying anything twice.
"""
