"""The examples a user copies: each language's agent serves each language's submit client,
which prints the command's output as it streams and exits with the command's exit code."""
import os
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT, Web, exe, wait_agents

SUBMIT = {
    "c": lambda: [exe("orchestra-submit-c")],
    "python": lambda: [sys.executable, os.path.join(ROOT, "examples", "python", "submit.py")],
    "node": lambda: ["node", os.path.join(ROOT, "examples", "node", "submit.js")],
}


@pytest.mark.parametrize("agent_lang", ["c", "python", "node"])
async def test_each_client_runs_a_command_on_each_agent(hub, agents, agent_lang):
    hub.start()
    secret = hub.add_key("k1")
    agents.start(agent_lang, "only", "k1", secret)
    token = hub.token()
    web = await Web.open(hub, token)
    await wait_agents(web, ["only"])
    await web.close()
    env = dict(os.environ, ORC_HUB_URL=hub.url, ORC_HUB_TOKEN=token,
               PYTHONPATH=os.path.join(ROOT, "bindings", "python"),
               ORCHESTRA_LIBRARY=os.path.join(BUILD, "liborchestra.so"),
               ORCHESTRA_NODE_ADDON=os.path.join(BUILD, "orchestra.node"))
    for client in ("c", "python", "node"):
        r = subprocess.run(SUBMIT[client]() + ["printf 'one\\ntwo\\n'; echo 'a \"quoted\" é'; exit 3"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, (client, r.stdout, r.stderr)
        assert r.stdout == 'one\ntwo\na "quoted" é\n', (client, r.stdout, r.stderr)
