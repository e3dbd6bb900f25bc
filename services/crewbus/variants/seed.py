"""The packaged prompt files on the bus: each role's is version 1 on a new bus.

The rule when a release ships a changed prompt file: the first service of that release to
start stores it as a new version (source `packaged`, named by its header), and production
does not move. A deployment never changes what tasks are served with; a person promotes
the new version (`crewbus prompt diff`, then `crewbus prompt label ROLE N production`),
and the agent says so in its log at start. A replica of an older release that starts later
finds its text already stored and changes nothing.
"""

from __future__ import annotations

import logging

from crewbus.variants.prompt_store import PromptStore, Pushed
from crewbus_contracts import AGENT_ROLES, PRODUCTION

log = logging.getLogger(__name__)


async def seed_packaged_prompts(store: PromptStore, roles: tuple[str, ...] = AGENT_ROLES
                                ) -> dict[str, Pushed]:
    """Store each role's packaged prompt unless its text is stored already."""
    from crewbus_agents.roles import AGENTS

    seeded = {}
    for role in roles:
        packaged = AGENTS[role].prompt
        pushed = await store.seed(role, packaged)
        seeded[role] = pushed
        index = await store.index(role)
        production = index.labels.get(PRODUCTION) if index else None
        if pushed.created and pushed.labelled is None and production != pushed.number:
            log.warning(
                "the packaged %s prompt (%s) is stored as version %d, but production serves "
                "version %s: see `crewbus prompt diff %s %s %d`, then `crewbus prompt label "
                "%s %d production` to serve it", role, packaged.version, pushed.number,
                production, role, production, pushed.number, role, pushed.number)
    return seeded
