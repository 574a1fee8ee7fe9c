"""Guild members' facts for admin commands: a role change's target is judged by its Discord rank too."""

from __future__ import annotations

import discord

from core.messages import PlatformFacts, WorkspaceRef


class GuildMembers:
    """core.admin.UserFacts for one guild: the member from the cache, else from the guild member endpoint."""

    def __init__(self, guild: discord.Guild | None) -> None:
        self.guild = guild

    async def facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
        if self.guild is None or not user_id.isdigit():
            return PlatformFacts()
        member = self.guild.get_member(int(user_id))
        if member is None:
            try:
                member = await self.guild.fetch_member(int(user_id))
            except discord.NotFound:  # not in the guild: only the stored role counts
                return PlatformFacts()
        return member_facts(member, self.guild)


def member_facts(member: discord.Member, guild: discord.Guild) -> PlatformFacts:
    """Guild owner -> owner, Administrator or Manage Guild -> admin, and the role ids for mappings."""
    permissions = member.guild_permissions
    return PlatformFacts(
        is_owner=guild.owner_id == member.id,
        is_admin=permissions.administrator or permissions.manage_guild,
        role_ids=tuple(str(r.id) for r in member.roles if not r.is_default()),
    )
