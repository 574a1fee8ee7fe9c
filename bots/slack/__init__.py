"""The Slack adapter: Bolt app, Surface, mrkdwn conversion, user facts; `run_slack` is the CLI's entry point."""

from bots.slack.server import run_slack

__all__ = ["run_slack"]
