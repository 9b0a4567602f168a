"""GitHub's REST API as the bot uses it: deployments and their statuses, release notes."""
