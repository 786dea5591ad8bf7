"""The launcher (pilot): node manager, runs, python runner, app-run platforms, the main loop.

Kept free of imports: ``python -m balsam_mq.launcher.python_runner`` and the serial-mode
workers start on compute nodes, and must not pay for the pilot's dependencies.
"""
