// The orchestra dashboard: login, agents, tasks, a task's detail and live output, submit,
// dead letters (admins), health and alerts. Everything it shows comes over the hub's /web
// protocol; what the page offers follows the user's role, and the hub checks every request
// anyway (a hidden button is not the check).

import {h, replace, fmtTime, fmtDuration, fmtAgo, randomId} from './dom.js';
import {Hub, HubError, login} from './hub.js';
import {Terminal} from './terminal.js';
import {lineChart} from './chart.js';

const STORE = 'orchestra.auth';
const POLL_MS = 5000;
const app = document.getElementById('app');
const banners = document.getElementById('banners');

let auth = loadAuth();
let hub = null;
let view = null;            // {stop()} of the current view
let clockSkew = 0;          // hub time - local time (ms)
let heartbeatMs = 5000;
const alertBanners = new Map();

function loadAuth() {
  try {
    const a = JSON.parse(sessionStorage.getItem(STORE) || 'null');
    return a && a.token && a.expiresAt * 1000 > Date.now() + 5000 ? a : null;
  } catch { return null; }
}

function saveAuth(a) {
  auth = a;
  if (a) sessionStorage.setItem(STORE, JSON.stringify(a)); else sessionStorage.removeItem(STORE);
}

// MARK: banners

function banner(id, cls, ...content) {
  let b = banners.querySelector(`[data-banner="${CSS.escape(id)}"]`);
  if (!b) {
    b = h('div', {class: `banner ${cls}`, 'data-banner': id, role: 'status'});
    banners.appendChild(b);
  }
  replace(b, ...content);
  return b;
}

function dropBanner(id) { banners.querySelector(`[data-banner="${CSS.escape(id)}"]`)?.remove(); }

function showAlert(a) {
  alertBanners.set(a.id, a);
  banner('alert:' + a.id, 'alert', h('strong', {}, 'Alert '), h('span', {class: 'mono'}, a.rule), ': ', a.message,
         h('span', {class: 'muted'}, ` since ${fmtTime(a.raisedAt)}`));
}

function clearAlert(a) {
  alertBanners.delete(a.id);
  dropBanner('alert:' + a.id);
}

function toast(text, cls = 'error') {
  const t = banner('toast', cls, text, ' ', h('button', {type: 'button', class: 'small', onclick: () => dropBanner('toast')}, 'Dismiss'));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.remove(), 8000);
}

function failed(e) { toast(e instanceof HubError ? `${e.code}: ${e.message}` : String(e)); }

// MARK: login

function showLogin(message) {
  view?.stop();
  view = null;
  hub?.close();
  hub = null;
  for (const id of [...alertBanners.keys()]) dropBanner('alert:' + id);
  alertBanners.clear();
  dropBanner('conn');
  const user = h('input', {id: 'login-user', name: 'user', autocomplete: 'username', required: true});
  const password = h('input', {id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true});
  const error = h('p', {class: 'error', id: 'login-error', role: 'alert'}, message || '');
  const submit = h('button', {type: 'submit', id: 'login-submit'}, 'Log in');
  const form = h('form', {class: 'login card', onsubmit: async ev => {
    ev.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const a = await login(user.value, password.value);
      saveAuth({token: a.token, expiresAt: a.expiresAt, user: a.user, role: a.role});
      start();
    } catch (e) {
      error.textContent = e.status === 429 ? `Too many failed logins: try again in ${e.retryAfter || 'a few'} s.`
        : e.status === 401 ? 'Wrong user name or password.' : `Login failed: ${e.message}`;
    } finally {
      submit.disabled = false;
    }
  }},
  h('h1', {}, 'orchestra'),
  h('label', {for: 'login-user'}, 'User'), user,
  h('label', {for: 'login-password'}, 'Password'), password,
  submit, error);
  replace(app, form);
  user.focus();
}

// MARK: the shell

function start() {
  const role = auth.role;
  hub = new Hub(auth, {
    onState: (s, why) => {
      document.body.dataset.conn = s;
      if (s === 'reconnecting') banner('conn', 'warn', `Reconnecting to the hub (${why})…`);
      else dropBanner('conn');
    },
    onAuth: a => {
      if (a) saveAuth({...auth, ...a});
      else { saveAuth(null); showLogin('Your session ended: log in again.'); }
    },
  });
  hub.on('connected', async () => {
    try {
      const r = await hub.request('alerts.list', {});
      for (const id of [...alertBanners.keys()]) if (!r.payload.alerts.some(a => a.id === id)) clearAlert({id});
      for (const a of r.payload.alerts) showAlert(a);
    } catch (e) { /* shown when the view's own requests fail */ }
    view?.refresh?.();
  });
  hub.on('alert.raised', showAlert);
  hub.on('alert.resolved', clearAlert);

  const links = [['agents', 'Agents'], ['tasks', 'Tasks']];
  if (role !== 'viewer') links.push(['submit', 'Submit']);
  if (role === 'admin') links.push(['dead', 'Dead letters']);
  links.push(['health', 'Health']);
  const nav = h('nav', {'aria-label': 'views'}, links.map(([k, label]) => h('a', {href: `#/${k}`, 'data-view': k}, label)));
  const content = h('section', {id: 'view'});
  replace(app,
    h('header', {},
      h('span', {class: 'brand'}, 'orchestra'), nav,
      h('span', {class: 'who'}, h('span', {id: 'who-user'}, auth.user), ' ', h('span', {class: 'badge', id: 'who-role'}, role)),
      h('button', {type: 'button', id: 'logout', class: 'small', onclick: () => { saveAuth(null); showLogin('Logged out.'); }}, 'Log out')),
    content);
  window.onhashchange = () => route(content, nav);
  route(content, nav);
}

function route(content, nav) {
  if (!hub) return;
  const [, name = 'agents', arg] = (location.hash || '#/agents').split('/');
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.view === name || (name === 'task' && a.dataset.view === 'tasks'));
  view?.stop();
  replace(content);
  const views = {agents: agentsView, tasks: tasksView, task: taskView, submit: submitView, dead: deadView, health: healthView};
  // What the role may not do is not offered (the hub refuses it anyway).
  const offered = name !== 'submit' || auth.role !== 'viewer' ? name !== 'dead' || auth.role === 'admin' : false;
  if (!offered) {
    replace(content, h('p', {class: 'muted', id: 'not-offered'}, `Your role (${auth.role}) may not use this view.`));
    view = {stop() {}};
    return;
  }
  view = (views[name] || agentsView)(content, arg && decodeURIComponent(arg));
}

/** A view that refreshes itself every POLL_MS while the tab is visible, and on reconnect. */
function polled(load) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (document.visibilityState === 'visible' && hub?.state === 'open') {
      try { await load(); } catch (e) { if (e.code !== 'CONN_001') failed(e); }
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return {stop: () => { stopped = true; clearTimeout(timer); }, refresh: () => { clearTimeout(timer); tick(); }};
}

function stateBadge(state) { return h('span', {class: `badge st-${state}`}, state); }

// MARK: agents

function agentsView(el) {
  const body = h('tbody', {id: 'agents-body'});
  const empty = h('p', {class: 'muted', id: 'agents-empty', hidden: true}, 'No agent has registered yet.');
  replace(el, h('h2', {}, 'Agents'), empty,
    h('div', {class: 'scroll'}, h('table', {id: 'agents'},
      h('thead', {}, h('tr', {}, ['Agent', 'Status', 'Capabilities', 'Load', 'Ping', 'CPU', 'Memory', 'Version', 'Connected', 'Running tasks']
        .map(t => h('th', {scope: 'col'}, t)))),
      body)));
  const load = async () => {
    const [agents, running, stats] = await Promise.all([
      hub.request('agents.list', {}), hub.request('tasks.list', {states: ['running'], limit: 500}), hub.request('stats.get', {minutes: 1})]);
    clockSkew = stats.payload.now - Date.now();
    heartbeatMs = stats.payload.heartbeatMs;
    const byAgent = new Map();
    for (const t of running.payload.tasks) if (t.agentId) byAgent.set(t.agentId, [...(byAgent.get(t.agentId) || []), t.taskId]);
    const now = Date.now() + clockSkew;
    const list = agents.payload.agents;
    empty.hidden = list.length > 0;
    replace(body, list.map(a => {
      const stale = a.status !== 'offline' && now - a.lastSeen > heartbeatMs * 1.5 + 1000;
      const status = stale ? 'stale' : a.status;
      const si = a.systemInfo || {};
      return h('tr', {'data-agent': a.id, class: `ag-${status}`},
        h('td', {}, h('div', {class: 'mono'}, a.id), a.name && a.name !== a.id ? h('div', {class: 'muted'}, a.name) : null),
        h('td', {}, h('span', {class: `badge ag-${status}`, title: stale ? `last heartbeat ${fmtAgo(a.lastSeen, now)}` : ''}, status)),
        h('td', {}, (a.capabilities || []).map(c => h('span', {class: 'chip'}, c))),
        h('td', {}, `${a.load} / ${a.maxConcurrency}`),
        h('td', {}, a.latency !== undefined ? `${a.latency.toFixed(1)} ms` : ''),
        h('td', {}, si.cpu !== undefined ? `${Number(si.cpu).toFixed(0)} %` : ''),
        h('td', {}, si.memory !== undefined ? `${Number(si.memory).toFixed(0)} %` : ''),
        h('td', {}, a.version || ''),
        h('td', {title: fmtTime(a.connectedAt)}, a.status === 'offline' ? `offline, seen ${fmtAgo(a.lastSeen, now)}` : fmtAgo(a.connectedAt, now)),
        h('td', {}, (byAgent.get(a.id) || []).map(t => h('a', {href: `#/task/${encodeURIComponent(t)}`, class: 'mono task-link'}, short(t)))));
    }));
  };
  const p = polled(load);
  const off = [hub.on('agent.connected', () => p.refresh()), hub.on('agent.disconnected', () => p.refresh())];
  return {stop: () => { p.stop(); off.forEach(f => f()); }, refresh: p.refresh};
}

function short(id) { return id.length > 14 ? id.slice(0, 12) + '…' : id; }

// MARK: tasks

function tasksView(el) {
  const filters = [['all', 'All'], ['queued', 'Queued'], ['running', 'Running'], ['succeeded', 'Succeeded'], ['failed', 'Failed'], ['dead', 'Dead']];
  let filter = 'all', search = '', next = null, rows = [];
  const chips = h('div', {class: 'filters', role: 'group', 'aria-label': 'state'});
  const searchBox = h('input', {type: 'search', id: 'task-search', placeholder: 'task id, or text in type and parameters',
                                'aria-label': 'search tasks'});
  const body = h('tbody', {id: 'tasks-body'});
  const more = h('button', {type: 'button', id: 'tasks-more', hidden: true, onclick: () => load(true).catch(failed)}, 'More');
  const empty = h('p', {class: 'muted', hidden: true}, 'No task matches.');
  replace(el, h('h2', {}, 'Tasks'), chips, searchBox, empty,
    h('div', {class: 'scroll'}, h('table', {id: 'tasks'},
      h('thead', {}, h('tr', {}, ['Task', 'Type', 'State', 'Submitter', 'Agent', 'Attempts', 'Created', 'Duration'].map(t => h('th', {scope: 'col'}, t)))),
      body)), more);
  let counts = {};
  const drawChips = () => replace(chips, filters.map(([k, label]) => h('button', {
    type: 'button', class: `chip-button${k === filter ? ' active' : ''}`, 'data-filter': k, 'aria-pressed': String(k === filter),
    onclick: () => { filter = k; drawChips(); load().catch(failed); }},
  label, k === 'all' ? '' : h('span', {class: 'count'}, String(k === 'running' ? (counts.running || 0) + (counts.assigned || 0) : counts[k] ?? 0)))));
  drawChips();
  let debounce = null;
  searchBox.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { search = searchBox.value.trim(); load().catch(failed); }, 250);
  });
  const query = () => {
    const q = {};
    if (filter === 'dead') q.dead = true; else if (filter !== 'all') q.states = [filter];
    if (search) q.search = search;
    return q;
  };
  const load = async (append = false) => {
    const q = query();
    if (append) { q.after = next; q.limit = 50; } else { q.limit = Math.min(500, Math.max(50, rows.length)); }
    const [page, stats] = await Promise.all([hub.request('tasks.list', q), append ? null : hub.request('stats.get', {minutes: 1})]);
    if (stats) { counts = stats.payload.tasks; drawChips(); }
    rows = append ? rows.concat(page.payload.tasks) : page.payload.tasks;
    next = page.payload.next;
    more.hidden = !next;
    empty.hidden = rows.length > 0;
    replace(body, rows.map(t => h('tr', {'data-task': t.taskId},
      h('td', {}, h('a', {href: `#/task/${encodeURIComponent(t.taskId)}`, class: 'mono task-link', title: t.taskId}, short(t.taskId))),
      h('td', {}, t.task?.type ?? ''),
      h('td', {}, stateBadge(t.dead ? 'dead' : t.state)),
      h('td', {}, t.submitter || ''),
      h('td', {class: 'mono'}, t.agentId || ''),
      h('td', {}, `${t.attempt} / ${t.maxAttempts}`),
      h('td', {title: new Date(t.createdAt).toISOString()}, fmtTime(t.createdAt)),
      h('td', {}, fmtDuration(t.duration ?? (Date.now() + clockSkew - t.createdAt))))));
  };
  const p = polled(() => (next && rows.length > 500 ? Promise.resolve() : load()));
  return {stop: p.stop, refresh: p.refresh};
}

// MARK: one task

function taskView(el, taskId) {
  let stopped = false, unwatch = null, rec = null;
  const term = new Terminal();
  const attempts = new Map();   // attempt -> {agentId, assignedAt, startedAt, endedAt, outcome}
  const head = h('div', {class: 'task-head'});
  const progress = h('progress', {max: 100, value: 0, id: 'task-progress'});
  const progressText = h('span', {class: 'muted', id: 'task-step'});
  const attemptsBody = h('tbody', {id: 'attempts-body'});
  const outcome = h('div', {id: 'task-outcome'});
  const spec = h('pre', {class: 'spec', id: 'task-spec'});
  const actions = h('div', {class: 'actions'});
  const note = h('p', {class: 'muted', id: 'output-note'});
  replace(el, h('p', {}, h('a', {href: '#/tasks'}, '← Tasks')), head, actions,
    h('div', {class: 'progress-row'}, progress, progressText),
    h('div', {class: 'cols'},
      h('div', {}, h('h3', {}, 'Attempts'), h('div', {class: 'scroll'}, h('table', {id: 'attempts'},
        h('thead', {}, h('tr', {}, ['#', 'Agent', 'Assigned', 'Started', 'Ended', 'Outcome'].map(t => h('th', {scope: 'col'}, t)))), attemptsBody)),
        outcome),
      h('div', {}, h('h3', {}, 'Task'), spec)),
    h('h3', {}, 'Output'), note, term.element);

  const drawAttempts = () => replace(attemptsBody, [...attempts.entries()].sort((a, b) => a[0] - b[0]).map(([n, a]) => h('tr', {},
    h('td', {}, String(n)), h('td', {class: 'mono'}, a.agentId || ''), h('td', {}, fmtTime(a.assignedAt)), h('td', {}, fmtTime(a.startedAt)),
    h('td', {}, fmtTime(a.endedAt)), h('td', {}, a.outcome || (a.startedAt ? 'running' : 'assigned')))));

  const drawHead = () => {
    if (!rec) return;
    const state = rec.dead ? 'dead' : rec.state;
    replace(head, h('h2', {}, 'Task ', h('span', {class: 'mono', id: 'task-id'}, rec.taskId), ' ', h('span', {id: 'task-state'}, stateBadge(state))),
      h('p', {class: 'muted'}, `submitted by ${rec.submitter || '?'} at ${fmtTime(rec.createdAt)}`,
        rec.agentId ? ` · agent ${rec.agentId}` : '', ` · attempt ${rec.attempt} of ${rec.maxAttempts}`,
        ['succeeded', 'failed'].includes(rec.state) ? ` · took ${fmtDuration(rec.updatedAt - rec.createdAt)}` : ''));
    spec.textContent = JSON.stringify(rec.task, null, 2);
    replace(outcome, rec.state === 'succeeded' ? [h('h3', {}, 'Result'), h('pre', {class: 'spec', id: 'task-result'}, JSON.stringify(rec.result ?? null, null, 2))]
      : rec.state === 'failed' ? [h('h3', {}, 'Error'), h('pre', {class: 'spec error', id: 'task-error'}, `${rec.errorCode || ''} ${rec.error || ''}`.trim())] : []);
    if (['succeeded', 'failed'].includes(rec.state)) progress.value = rec.state === 'succeeded' ? 100 : progress.value;
    const finished = ['succeeded', 'failed'].includes(rec.state);
    const canAct = auth.role !== 'viewer' && !finished && (auth.role === 'admin' || rec.submitter === auth.user);
    const input = h('input', {id: 'worker-input', placeholder: 'input for the worker', 'aria-label': 'input for the worker'});
    replace(actions, canAct ? [
      h('button', {type: 'button', id: 'task-cancel', class: 'danger', onclick: async () => {
        try { await hub.request('task.cancel', {taskId}); await reload(); } catch (e) { failed(e); }
      }}, 'Cancel task'),
      rec.agentId ? h('form', {class: 'inline', onsubmit: async ev => {
        ev.preventDefault();
        try { await hub.request('worker.input', {agentId: rec.agentId, taskId, input: input.value + '\n'}); input.value = ''; } catch (e) { failed(e); }
      }}, input, h('button', {type: 'submit'}, 'Send')) : null] : []);
  };

  const onEvent = m => {
    const p = m.payload || {};
    if (p.taskId !== taskId) return;
    const a = attempts.get(p.attempt) || {};
    switch (m.type) {
      case 'task.assign': attempts.set(p.attempt, {...a, agentId: p.agentId, assignedAt: m.timestamp}); drawAttempts(); break;
      case 'task.accepted': attempts.set(p.attempt, {...a, startedAt: m.timestamp}); drawAttempts(); break;
      case 'task.rejected': attempts.set(p.attempt, {...a, endedAt: m.timestamp, outcome: `rejected: ${p.reason || ''}`}); drawAttempts(); break;
      case 'task.progress':
        if (typeof p.progress === 'number') progress.value = p.progress;
        progressText.textContent = p.currentStep ? String(p.currentStep) : '';
        break;
      case 'task.stream': term.write(p.type, p.data); break;
      case 'worker.output': term.write(p.type || 'stdout', typeof p.data === 'string' ? p.data : p.output); break;
      case 'task.result':
        attempts.set(p.attempt, {...a, endedAt: m.timestamp, outcome: p.success ? 'succeeded' : `failed${p.error ? ': ' + p.error : ''}`});
        drawAttempts();
        reload().catch(failed);
        break;
      default: break;
    }
  };

  const reload = async () => {
    rec = (await hub.request('task.get', {taskId})).payload;
    drawHead();
  };

  (async () => {
    try {
      await reload();
      const sid = rec.task?.sessionId;
      if (!sid) {
        note.textContent = 'This task has no session: its output was not kept, and only its result is shown.';
        return;
      }
      unwatch = await hub.watch(sid, [taskId], onEvent);
      if (stopped) { unwatch(); return; }
      note.textContent = '';
    } catch (e) {
      if (!stopped) {
        note.textContent = e instanceof HubError ? `${e.code}: ${e.message}` : String(e);
        note.className = 'error';
      }
    }
  })();
  // Keeps the state current when nothing streams (a queued task being assigned elsewhere).
  const p = polled(async () => { if (rec && !['succeeded', 'failed'].includes(rec.state)) await reload(); });
  return {
    stop: () => { stopped = true; p.stop(); unwatch?.(); },
    refresh: p.refresh,
    terminal: term,
  };
}

// MARK: submit

function submitView(el) {
  const type = h('input', {id: 'submit-type', value: 'shell', required: true});
  const caps = h('input', {id: 'submit-capabilities', value: 'shell', placeholder: 'comma separated'});
  const params = h('textarea', {id: 'submit-parameters', rows: 6, spellcheck: 'false'});
  params.value = JSON.stringify({command: 'echo hello from the dashboard'}, null, 2);
  const paramsError = h('p', {class: 'error', id: 'submit-parameters-error', role: 'alert'});
  const strategy = h('select', {id: 'submit-strategy'}, ['', 'round-robin', 'least-connections', 'lowest-latency', 'resource-based', 'random']
    .map(s => h('option', {value: s}, s || 'hub default')));
  const priority = h('select', {id: 'submit-priority'}, ['low', 'normal', 'high', 'critical'].map(s => h('option', {value: s, selected: s === 'normal'}, s)));
  const button = h('button', {type: 'submit', id: 'submit-button'}, 'Submit');
  const validate = () => {
    try {
      const v = JSON.parse(params.value || '{}');
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('parameters must be a JSON object, e.g. {"command": "ls"}');
      paramsError.textContent = '';
      params.removeAttribute('aria-invalid');
      button.disabled = false;
      return v;
    } catch (e) {
      paramsError.textContent = `Parameters: ${e.message}`;
      params.setAttribute('aria-invalid', 'true');
      button.disabled = true;
      return null;
    }
  };
  params.addEventListener('input', validate);
  const form = h('form', {class: 'card submit', onsubmit: async ev => {
    ev.preventDefault();
    const parameters = validate();
    if (!parameters) return;
    button.disabled = true;
    const taskId = randomId('t-');
    try {
      // The task gets a session of its own (made by the submit, owned by the submitter): every
      // event of the task is kept in its replay log, which the task's view replays, then follows.
      const payload = {taskId, sessionId: taskId, type: type.value.trim(), parameters, priority: priority.value,
                       capabilities: caps.value.split(',').map(s => s.trim()).filter(Boolean)};
      if (strategy.value) payload.strategy = strategy.value;
      await hub.request('task.submit', payload);
      location.hash = `#/task/${encodeURIComponent(taskId)}`;
    } catch (e) {
      failed(e);
      button.disabled = false;
    }
  }},
  h('h2', {}, 'Submit a task'),
  h('label', {for: 'submit-type'}, 'Type'), type,
  h('label', {for: 'submit-capabilities'}, 'Capabilities'), caps,
  h('label', {for: 'submit-parameters'}, 'Parameters (JSON)'), params, paramsError,
  h('div', {class: 'row'},
    h('span', {}, h('label', {for: 'submit-strategy'}, 'Strategy'), strategy),
    h('span', {}, h('label', {for: 'submit-priority'}, 'Priority'), priority)),
  button);
  replace(el, form);
  return {stop() {}};
}

// MARK: dead letters

function deadView(el) {
  const body = h('tbody', {id: 'dead-body'});
  const empty = h('p', {class: 'muted', hidden: true, id: 'dead-empty'}, 'The dead-letter list is empty.');
  replace(el, h('h2', {}, 'Dead letters'), empty, h('div', {class: 'scroll'}, h('table', {id: 'dead'},
    h('thead', {}, h('tr', {}, ['Task', 'Type', 'Attempts', 'Error', 'Failed', ''].map(t => h('th', {scope: 'col'}, t)))), body)));
  const load = async () => {
    const r = await hub.request('dead.list', {limit: 200});
    empty.hidden = r.payload.tasks.length > 0;
    replace(body, r.payload.tasks.map(t => h('tr', {'data-task': t.taskId},
      h('td', {}, h('a', {href: `#/task/${encodeURIComponent(t.taskId)}`, class: 'mono'}, short(t.taskId))),
      h('td', {}, t.task?.type ?? ''), h('td', {}, `${t.attempt} / ${t.maxAttempts}`),
      h('td', {}, `${t.errorCode || ''} ${t.error || ''}`.trim()), h('td', {}, fmtTime(t.updatedAt)),
      h('td', {}, h('button', {type: 'button', class: 'small requeue', onclick: async ev => {
        ev.target.disabled = true;
        try { await hub.request('dead.requeue', {taskId: t.taskId}); toast(`Requeued ${t.taskId}`, 'ok'); await load(); } catch (e) { failed(e); ev.target.disabled = false; }
      }}, 'Requeue')))));
  };
  return polled(load);
}

// MARK: health

function healthView(el) {
  const charts = h('div', {class: 'charts', id: 'charts'});
  const summary = h('div', {class: 'summary', id: 'health-summary'});
  const alertsList = h('ul', {id: 'alerts-list'});
  replace(el, h('h2', {}, 'Health'), summary, charts, h('h3', {}, 'Alerts'), alertsList);
  const load = async () => {
    const [s, a] = await Promise.all([hub.request('stats.get', {minutes: 10}), hub.request('alerts.list', {})]);
    const st = s.payload, pts = st.points, times = pts.map(p => p.at);
    const t = st.tasks || {};
    replace(summary, [
      ['agents online', `${st.agents.online} / ${st.agents.total}`], ['queued', t.queued], ['running', (t.running || 0) + (t.assigned || 0)],
      ['succeeded', t.succeeded], ['failed', t.failed], ['dead', t.dead], ['alerts', st.alerts]]
      .map(([k, v]) => h('div', {class: 'stat'}, h('div', {class: 'stat-value'}, String(v ?? 0)), h('div', {class: 'muted'}, k))));
    replace(charts,
      lineChart('tasks / s', times, [{name: 'submitted', cls: 's1', values: pts.map(p => p.submittedPerSecond)},
                                     {name: 'finished', cls: 's2', values: pts.map(p => p.finishedPerSecond)}]),
      lineChart('queue depth', times, [{name: 'queued', cls: 's1', values: pts.map(p => p.queued)},
                                       {name: 'in flight', cls: 's2', values: pts.map(p => p.inFlight)}]),
      lineChart('task latency', times, [{name: 'p50', cls: 's1', values: pts.map(p => p.latencyP50Ms ?? null)},
                                        {name: 'p99', cls: 's3', values: pts.map(p => p.latencyP99Ms ?? null)}], {unit: ' ms'}));
    const rules = a.payload.rules;
    replace(alertsList, a.payload.alerts.length ? a.payload.alerts.map(x => h('li', {'data-alert': x.id}, h('span', {class: 'mono'}, x.rule), ': ', x.message))
      : h('li', {class: 'muted'}, `None. Rules: agent offline > ${rules.agentOfflineSeconds} s, latency p99 > ${rules.latencyP99Ms} ms, `
        + `error rate > ${rules.errorRatePercent} % over ${rules.windowSeconds} s (0 = off).`));
  };
  const p = polled(load);
  const off = [hub.on('alert.raised', () => p.refresh()), hub.on('alert.resolved', () => p.refresh())];
  return {stop: () => { p.stop(); off.forEach(f => f()); }, refresh: p.refresh};
}

// The page's entry: the login, or the dashboard with the token this tab kept.
window.orchestra = {get view() { return view; }, get hub() { return hub; }};
if (auth) start(); else showLogin();
