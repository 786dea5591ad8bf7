"""Sites: the site directory and settings.yml, schedulers, batch jobs."""
