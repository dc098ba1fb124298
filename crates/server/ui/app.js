// Mantle web UI: one page with hash routes (#/services, #/app/ID, #/new, #/edit/ID,
// #/task/ID, #/cluster) that talks only to the master's origin: the master's read endpoints,
// /marathon/v2/... (the service scheduler, proxied by the master) and /agent/ID/... (an
// agent's /state and sandbox files, proxied). Hand-written, no libraries, no build step.
'use strict';
(function () {
  const main = document.getElementById('main');
  const banner = document.getElementById('banner');
  const liveEl = document.getElementById('live');

  // ---------- DOM and formatting helpers

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    add(el, kids);
    return el;
  }

  function add(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
  }

  // Replaces an element's children; keyboard focus stays on the element with the same data-key.
  function fill(el, ...kids) {
    const a = document.activeElement;
    const key = a && el.contains(a) ? a.getAttribute('data-key') : null;
    el.replaceChildren();
    add(el, kids);
    if (key) {
      const again = [...el.querySelectorAll('[data-key]')].find((e) => e.getAttribute('data-key') === key);
      if (again) again.focus();
    }
  }

  function say(el, text, bad) {
    el.textContent = text || '';
    el.className = 'notice' + (bad ? ' bad' : '');
  }

  const num = (n) => (n == null || Number.isNaN(Number(n)) ? '—' : String(Math.round(Number(n) * 1000) / 1000));
  const mib = (m) => (m == null ? '—' : m >= 1024 ? `${num(m / 1024)} GiB` : `${num(m)} MiB`);
  const pct = (x) => `${(Math.round(x * 1000) / 10).toFixed(1)}%`;

  function when(t) {
    if (t == null || t === '' || t === 0) return '—';
    const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
    if (Number.isNaN(d.getTime())) return String(t);
    return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
  }

  const badge = (s, label) => h('span', { class: `badge s-${s}` }, label || s);
  const segs = (id) => id.split('/').filter(Boolean);
  const appPath = (id) => segs(id).map(encodeURIComponent).join('/');
  const appHash = (id) => `#/app/${appPath(id)}`;
  const taskHash = (id) => `#/task/${encodeURIComponent(id)}`;

  // A table, or the `empty` text when there are no rows. Headings starting with # are numeric.
  function table(caption, head, rows, empty) {
    if (!rows.length) return h('p', { class: 'empty' }, empty);
    return h('table', {},
      h('caption', { class: 'muted' }, caption),
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col', class: c.startsWith('#') ? 'num' : null }, c.replace(/^#/, ''))))),
      h('tbody', {}, rows));
  }

  function facts(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  // ---------- HTTP

  // Answers {ok, status, data, message}; never throws.
  async function api(method, url, body) {
    const opt = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(url, opt);
    } catch (e) {
      return { ok: false, status: 0, data: null, message: `The master did not answer (${e.message})` };
    }
    const text = await r.text().catch(() => '');
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    const message = (data && typeof data.message === 'string' && data.message) || text.trim() || `${r.status} ${r.statusText}`;
    return { ok: r.ok, status: r.status, data, message };
  }

  // A Marathon answer's problem as text, including 409's locking deployments.
  function problem(r) {
    if (r.status === 409 && r.data && Array.isArray(r.data.deployments)) {
      return `${r.message} (deployment ${r.data.deployments.map((d) => d.id).join(', ')})`;
    }
    if (r.status === 422 && r.data && Array.isArray(r.data.details)) {
      return `${r.message}: ${r.data.details.map((d) => `${d.path} ${(d.errors || []).join('; ')}`).join(', ')}`;
    }
    return r.message;
  }

  // ---------- shared data, live updates

  const data = { apps: null, queue: [], deployments: [], marathonError: null, master: null, masterError: null };

  async function loadMarathon() {
    const [a, q, d] = await Promise.all([
      api('GET', '/marathon/v2/apps'), api('GET', '/marathon/v2/queue'), api('GET', '/marathon/v2/deployments')]);
    if (a.ok && a.data) {
      data.apps = a.data.apps || [];
      data.marathonError = null;
    } else {
      data.marathonError = `Service scheduler: ${a.message}`;
    }
    if (q.ok && q.data) data.queue = q.data.queue || [];
    if (d.ok && Array.isArray(d.data)) data.deployments = d.data;
    showBanner();
  }

  async function loadMaster() {
    const r = await api('GET', '/master/state');
    if (r.ok && r.data) {
      data.master = r.data;
      data.masterError = null;
    } else {
      data.masterError = `Master: ${r.message}`;
    }
    showBanner();
  }

  function showBanner() {
    const needs = (page && page.needs) || [];
    const msgs = [];
    if (needs.includes('marathon') && data.marathonError) msgs.push(data.marathonError);
    if (needs.includes('master') && data.masterError) msgs.push(data.masterError);
    banner.textContent = msgs.join(' · ');
    banner.hidden = !msgs.length;
  }

  const EVENTS = ['status_update_event', 'health_status_changed_event', 'failed_health_check_event',
    'deployment_info', 'deployment_success', 'deployment_failed', 'deployment_step_success',
    'api_post_event', 'app_terminated_event', 'instance_changed_event',
    'unhealthy_instance_kill_event', 'group_change_success'];
  let events = null;
  let eventsOpen = false;
  let pokeTimer = null;

  function connectEvents() {
    events = new EventSource('/marathon/v2/events');
    events.onopen = () => { eventsOpen = true; showLive(); poke(); };
    events.onerror = () => {
      eventsOpen = false;
      showLive();
      // A refused stream (such as 503 without a service scheduler) is not retried by the browser.
      if (events.readyState === EventSource.CLOSED) setTimeout(connectEvents, 5000);
    };
    events.onmessage = poke;
    for (const t of EVENTS) events.addEventListener(t, poke);
  }

  function showLive() {
    liveEl.textContent = eventsOpen ? 'Live' : 'Live updates reconnecting…';
    liveEl.className = 'live ' + (eventsOpen ? 'ok' : 'bad');
  }

  function poke() {
    clearTimeout(pokeTimer);
    pokeTimer = setTimeout(() => refresh('event'), 150);
  }

  // On timer ticks the scheduler is asked only every third tick while its event stream is open.
  let ticks = 0;
  const marathonDue = (why) => why !== 'timer' || !eventsOpen || ticks % 3 === 0;

  let page = null;
  let busy = false;
  let again = null;

  async function refresh(why) {
    if (!page || !page.load) return;
    if (busy) { again = why; return; }
    busy = true;
    const p = page;
    try {
      await p.load(why);
      if (p === page && p.update) p.update();
    } catch (e) {
      console.error(e);
    } finally {
      busy = false;
      if (again) { const w = again; again = null; refresh(w); }
    }
  }

  // ---------- Services

  function appStatus(app) {
    const q = data.queue.find((x) => x.app && x.app.id === app.id);
    const waiting = q && q.count > 0 &&
      ((q.delay && q.delay.timeLeftSeconds > 0) ||
       (q.processedOffersSummary && q.processedOffersSummary.unusedOffersCount > 0));
    if (waiting) return 'waiting';
    if (app.deployments && app.deployments.length) return 'deploying';
    if (app.instances === 0) return 'suspended';
    return 'running';
  }

  function groupStatus(list) {
    for (const s of ['waiting', 'deploying', 'running']) if (list.includes(s)) return s;
    return 'suspended';
  }

  function bySegments(a, b) {
    const x = segs(a), y = segs(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return x.length - y.length;
  }

  function serviceRow(r) {
    const depth = segs(r.id).length - 1;
    const name = segs(r.id).pop() || '/';
    const cell = (cls, v) => h('td', { class: `num ${cls}` }, v);
    const indent = h('span', { class: 'indent', 'aria-hidden': 'true' }, '\u2003'.repeat(depth));
    if (r.apps) {
      const st = groupStatus(r.apps.map(appStatus));
      const sum = (f) => r.apps.reduce((t, a) => t + f(a), 0);
      const checked = r.apps.filter((a) => (a.healthChecks || []).length);
      return h('tr', { class: 'group', 'data-group': r.id },
        h('th', { scope: 'row' }, indent, h('span', { title: r.id }, `${name}/`)),
        h('td', {}, 'group'), h('td', { class: 'status' }, badge(st)),
        cell('healthy', checked.length ? sum((a) => (a.healthChecks || []).length ? a.tasksHealthy || 0 : 0) : '—'),
        cell('running', sum((a) => a.tasksRunning || 0)), cell('target', sum((a) => a.instances || 0)),
        cell('cpus', `${num(sum((a) => a.cpus * a.instances))} total`),
        cell('mem', `${mib(sum((a) => a.mem * a.instances))} total`));
    }
    const a = r.app;
    return h('tr', { class: 'app', 'data-app': a.id },
      h('th', { scope: 'row' }, indent,
        h('a', { href: appHash(a.id), 'data-key': `app:${a.id}`, 'aria-label': a.id, title: a.id }, name)),
      h('td', {}, 'app'), h('td', { class: 'status' }, badge(appStatus(a))),
      cell('healthy', (a.healthChecks || []).length ? a.tasksHealthy || 0 : '—'),
      cell('running', a.tasksRunning || 0), cell('target', a.instances),
      cell('cpus', num(a.cpus)), cell('mem', mib(a.mem)));
  }

  function servicesPage() {
    const summary = h('p', { class: 'muted', id: 'services-summary' });
    const list = h('div', { id: 'services' });
    const el = h('section', {},
      h('div', { class: 'bar' },
        h('h1', { tabindex: -1 }, 'Services'), h('span', { class: 'spacer' }),
        h('a', { class: 'button primary', href: '#/new', id: 'create-service' }, 'Create service')),
      summary, list);
    return {
      el, title: 'Services', needs: ['marathon'],
      async load(why) { if (!data.apps || marathonDue(why)) await loadMarathon(); },
      update() {
        if (!data.apps) return;
        const groups = new Map();
        for (const a of data.apps) {
          const p = segs(a.id);
          for (let i = 1; i < p.length; i++) {
            const g = '/' + p.slice(0, i).join('/');
            if (!groups.has(g)) groups.set(g, { id: g, apps: [] });
            groups.get(g).apps.push(a);
          }
        }
        const rows = [...data.apps.map((a) => ({ id: a.id, app: a })), ...groups.values()];
        rows.sort((x, y) => bySegments(x.id, y.id));
        const counts = {};
        for (const a of data.apps) counts[appStatus(a)] = (counts[appStatus(a)] || 0) + 1;
        summary.textContent = `${data.apps.length} app${data.apps.length === 1 ? '' : 's'}` +
          Object.entries(counts).map(([k, v]) => `, ${v} ${k}`).join('');
        fill(list, table('Apps and groups',
          ['Name', 'Type', 'Status', '#Healthy', '#Running', '#Target', '#CPUs', '#Memory'],
          rows.map(serviceRow), 'No services yet. Create one to run a command on the cluster.'));
      },
    };
  }

  // ---------- Service detail

  function appPage(id) {
    let app = null;
    let versions = null;
    let versionsOf = null;
    let error = null;
    const msg = h('div', { class: 'notice', role: 'status', id: 'app-message' });
    const scaleInput = h('input', { id: 'scale-n', type: 'number', min: 0, step: 1, inputmode: 'numeric', size: 5 });
    const live = h('div', { id: 'app-live' });
    const title = h('h1', { tabindex: -1 }, id, ' ');
    const statusEl = h('span', {});
    title.append(statusEl);

    async function act(label, method, url, body, after) {
      say(msg, `${label}…`);
      const r = await api(method, url, body);
      if (r.ok) {
        say(msg, `${label}: ${r.data && r.data.deploymentId ? `deployment ${r.data.deploymentId} started` : 'done'}`);
        if (after) after(r);
        poke();
        return;
      }
      say(msg, `${label} failed: ${problem(r)}`, true);
      if (r.status === 409 && !/force=true/.test(url)) {
        msg.append(' ', h('button', {
          type: 'button', id: 'force',
          onclick: () => act(`${label} (forced)`, method, url + (url.includes('?') ? '&' : '?') + 'force=true', body, after),
        }, `${label} anyway (stops the running deployment)`));
      }
    }

    // Changes go out as PATCH, which never creates an app that was removed meanwhile.
    const base = `/marathon/v2/apps/${appPath(id)}`;
    const scale = (ev) => {
      ev.preventDefault();
      const n = Number(scaleInput.value);
      if (scaleInput.value.trim() === '' || !Number.isInteger(n) || n < 0) {
        say(msg, 'Instances must be a whole number, 0 or more.', true);
        scaleInput.setAttribute('aria-invalid', 'true');
        scaleInput.focus();
        return;
      }
      scaleInput.removeAttribute('aria-invalid');
      act(`Scale to ${n}`, 'PATCH', base, { instances: n });
    };
    const actions = h('form', { class: 'bar', onsubmit: scale, 'aria-label': 'Actions' },
      h('label', { for: 'scale-n' }, 'Instances'), scaleInput,
      h('button', { type: 'submit', id: 'scale-btn', class: 'primary' }, 'Scale'),
      h('button', { type: 'button', id: 'restart-btn', onclick: () => act('Restart', 'POST', `${base}/restart`) }, 'Restart'),
      h('button', { type: 'button', id: 'suspend-btn', onclick: () => act('Suspend', 'PATCH', base, { instances: 0 }) }, 'Suspend'),
      h('a', { class: 'button', href: `#/edit/${appPath(id)}`, id: 'edit-btn' }, 'Edit'),
      h('button', {
        type: 'button', class: 'danger', id: 'destroy-btn',
        onclick: () => {
          if (!window.confirm(`Destroy ${id}? Its tasks are killed and its versions forgotten.`)) return;
          act('Destroy', 'DELETE', base, undefined, () => { location.hash = '#/services'; });
        },
      }, 'Destroy'));

    const el = h('section', {},
      h('p', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / ', id),
      title, actions, msg, live);

    function tasksTable() {
      const checks = (app.healthChecks || []).length > 0;
      return table(`Tasks of ${id}`, ['Task', 'Agent', 'Ports', 'Health', 'State', 'Started', 'Actions'],
        (app.tasks || []).map((t) => {
          const res = (t.healthCheckResults || [])[0];
          const health = !checks ? '—' : res ? (res.alive ? badge('healthy') : badge('unhealthy')) : badge('unknown');
          return h('tr', { 'data-task': t.id },
            h('th', { scope: 'row' }, h('a', { href: taskHash(t.id), class: 'task-link mono', 'data-key': `task:${t.id}` }, t.id)),
            h('td', {}, t.host), h('td', { class: 'mono' }, (t.ports || []).join(', ') || '—'),
            h('td', { class: 'health' }, health), h('td', {}, badge(t.state)), h('td', {}, when(t.startedAt || t.stagedAt)),
            h('td', {}, h('button', {
              type: 'button', 'data-key': `kill:${t.id}`,
              onclick: () => act(`Kill ${t.id}`, 'DELETE', `${base}/tasks/${encodeURIComponent(t.id)}`),
            }, 'Kill')));
        }), 'No tasks.');
    }

    function deploymentsSection() {
      const mine = data.deployments.filter((d) => (d.affectedApps || []).includes(id));
      if (!mine.length) return h('p', { class: 'empty' }, 'No deployment in progress.');
      return mine.map((d) => {
        const actions = (d.currentActions || []).map((a) => `${a.action} ${a.app || ''}`.trim()).join(', ');
        const ready = (app.healthChecks || []).length ? app.tasksHealthy : app.tasksRunning;
        return h('div', { class: 'deployment', 'data-deployment': d.id },
          facts([
            ['Deployment', h('span', { class: 'mono' }, d.id)],
            ['Step', `${d.currentStep} of ${d.totalSteps}${actions ? ` — ${actions}` : ''}`],
            ['Progress', h('span', {},
              h('progress', { max: Math.max(app.instances, 1), value: Math.min(ready || 0, app.instances), 'aria-label': 'Ready instances' }),
              ` ${ready || 0} of ${app.instances} ready`)],
            ['Started', when(d.version)],
          ]),
          h('button', {
            type: 'button', 'data-key': `cancel:${d.id}`,
            onclick: () => act('Cancel deployment', 'DELETE', `/marathon/v2/deployments/${encodeURIComponent(d.id)}`),
          }, 'Cancel (rolls back)'));
      });
    }

    function queueSection() {
      const q = data.queue.find((x) => x.app && x.app.id === id);
      if (!q) return h('p', { class: 'empty' }, 'No instances waiting to launch.');
      const s = q.processedOffersSummary || {};
      const reasons = (s.rejectSummaryLastOffers || []).filter((r) => r.declined > 0);
      return [
        facts([
          ['Waiting to launch', String(q.count)],
          ['Launch delay', q.delay && q.delay.timeLeftSeconds > 0 ? `${q.delay.timeLeftSeconds} s left (backoff after failures)` : 'none'],
          ['Offers', `${s.processedOffersCount || 0} processed, ${s.unusedOffersCount || 0} not used`],
        ]),
        table('Why offers were not used', ['Reason', '#Offers declined', '#Offers processed'],
          reasons.map((r) => h('tr', {}, h('th', { scope: 'row' }, r.reason), h('td', { class: 'num' }, r.declined), h('td', { class: 'num' }, r.processed))),
          'No offer has been refused yet.'),
        table('Last unused offers', ['When', 'Agent', 'Reason'],
          (q.lastUnusedOffers || []).slice().reverse().map((o) => h('tr', {},
            h('td', {}, when(o.timestamp)), h('td', {}, (o.offer && o.offer.hostname) || '—'),
            h('td', {}, (o.reason || []).join(', ')))), 'None.'),
      ];
    }

    function failureSection() {
      const f = app.lastTaskFailure;
      if (!f) return h('p', { class: 'empty' }, 'No task has failed.');
      return facts([['Task', h('span', { class: 'mono' }, f.taskId)], ['State', badge(f.state)],
        ['Message', f.message || '—'], ['Agent', f.host || '—'], ['When', when(f.timestamp)], ['Version', f.version]]);
    }

    function versionsSection() {
      if (!versions) return h('p', { class: 'empty' }, 'Loading…');
      return table('Versions, newest first', ['Version', ''], versions.map((v) => h('tr', {},
        h('td', {}, when(v), ' ', h('span', { class: 'mono muted' }, v)),
        h('td', {}, v === app.version ? h('span', { class: 'muted' }, 'current') : h('button', {
          type: 'button', 'data-key': `rollback:${v}`,
          onclick: () => act(`Roll back to ${v}`, 'PATCH', base, { version: v }),
        }, 'Roll back to this version')))), 'No versions.');
    }

    return {
      el, title: id, needs: ['marathon'],
      async load(why) {
        if (app && !marathonDue(why)) return;
        const [r] = await Promise.all([api('GET', base), loadMarathon()]);
        if (!r.ok) { error = problem(r); return; }
        error = null;
        app = r.data.app;
        if (scaleInput.value === '') scaleInput.value = app.instances;
        const stamp = app.version;
        if (versionsOf !== stamp) {
          const v = await api('GET', `${base}/versions`);
          if (v.ok && v.data) { versions = v.data.versions || []; versionsOf = stamp; }
        }
      },
      update() {
        if (error) { fill(live, h('p', { class: 'notice bad' }, error)); return; }
        if (!app) return;
        fill(statusEl, badge(appStatus(app)));
        const checks = (app.healthChecks || []).map((c) => `${c.protocol}${c.command ? ` "${c.command.value}"` : ''}${c.path ? ` ${c.path}` : ''} every ${c.intervalSeconds} s`);
        fill(live,
          facts([
            ['Command', h('code', {}, app.cmd || (app.args || []).join(' ') || '—')],
            ['Instances', `${(app.healthChecks || []).length ? `${app.tasksHealthy} healthy, ` : ''}${app.tasksRunning} running, ${app.instances} wanted`],
            ['Resources', `${num(app.cpus)} CPUs, ${mib(app.mem)} memory, ${mib(app.disk)} disk per instance`],
            ['Health checks', checks.join('; ') || 'none'],
            ['Version', when(app.version)],
          ]),
          h('h2', {}, 'Tasks'), tasksTable(),
          h('h2', {}, 'Deployments'), deploymentsSection(),
          h('h2', {}, 'Waiting instances'), queueSection(),
          h('h2', {}, 'Last task failure'), failureSection(),
          h('h2', {}, 'Versions'), versionsSection());
      },
    };
  }

  // ---------- Create and edit

  // Fields of the form: where each one lives in the app definition (for Marathon's 422
  // details, whose paths are matched to the longest field path that is a prefix).
  const FIELDS = [
    { key: 'id', path: '/id', label: 'ID', type: 'text', hint: 'A path such as /prod/web; groups come from the path.' },
    { key: 'cmd', path: '/cmd', label: 'Command', type: 'textarea', hint: 'Run by /bin/sh -c in the task\'s sandbox; $HOST and $PORT0 are set.' },
    { key: 'instances', path: '/instances', label: 'Instances', type: 'number', step: '1' },
    { key: 'cpus', path: '/cpus', label: 'CPUs', type: 'number', step: 'any' },
    { key: 'mem', path: '/mem', label: 'Memory (MiB)', type: 'number', step: 'any' },
    { key: 'disk', path: '/disk', label: 'Disk (MiB)', type: 'number', step: 'any' },
    { key: 'ports', path: '/portDefinitions', label: 'Host ports', type: 'number', step: '1', hint: 'How many ports to reserve ($PORT0, $PORT1, …).' },
    { key: 'hc-protocol', path: '/healthChecks', label: 'Health check', type: 'select',
      hint: 'TCP and HTTP checks probe $PORT0; MESOS_ ones run next to the task.',
      options: [['', 'None'], ['COMMAND', 'COMMAND'], ['MESOS_TCP', 'MESOS_TCP'], ['MESOS_HTTP', 'MESOS_HTTP'], ['TCP', 'TCP'], ['HTTP', 'HTTP']] },
    { key: 'hc-command', path: '/healthChecks/0/command', label: 'Check command', type: 'text', hint: 'Healthy while it exits with status 0.', when: ['COMMAND'] },
    { key: 'hc-path', path: '/healthChecks/0/path', label: 'Check path', type: 'text', when: ['HTTP', 'MESOS_HTTP'] },
    { key: 'hc-interval', path: '/healthChecks/0/intervalSeconds', label: 'Check every (s)', type: 'number', step: '1', when: ['COMMAND', 'MESOS_TCP', 'MESOS_HTTP', 'TCP', 'HTTP'] },
    { key: 'hc-grace', path: '/healthChecks/0/gracePeriodSeconds', label: 'Grace period (s)', type: 'number', step: '1', when: ['COMMAND', 'MESOS_TCP', 'MESOS_HTTP', 'TCP', 'HTTP'] },
  ];
  const READ_ONLY = ['version', 'versionInfo', 'tasks', 'deployments', 'tasksStaged', 'tasksRunning',
    'tasksHealthy', 'tasksUnhealthy', 'lastTaskFailure', 'readinessCheckResults', 'taskStats', 'counts'];

  function editable(app) {
    const d = JSON.parse(JSON.stringify(app));
    for (const k of READ_ONLY) delete d[k];
    return d;
  }

  // Every leaf of a JSON value by its path (/a/0/b), for the diff.
  function leaves(v, path, out) {
    if (v !== null && typeof v === 'object' && Object.keys(v).length) {
      for (const [k, x] of Object.entries(v)) leaves(x, `${path}/${k}`, out);
    } else {
      out.set(path || '/', JSON.stringify(v));
    }
    return out;
  }

  function diff(before, after) {
    const a = leaves(before, '', new Map());
    const b = leaves(after, '', new Map());
    const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
    return paths.filter((p) => a.get(p) !== b.get(p)).map((p) => ({ path: p, before: a.get(p), after: b.get(p) }));
  }

  function editorPage(appId) {
    const editing = appId != null;
    let original = null;
    let def = editing ? null : { id: '', cmd: '', instances: 1, cpus: 0.1, mem: 64 };
    let mode = 'form';
    const inputs = {};
    const general = h('div', { class: 'notice', role: 'alert', id: 'editor-errors' });

    const fieldEls = FIELDS.map((f) => {
      const described = [`f-${f.key}-error`, f.hint ? `f-${f.key}-hint` : null].filter(Boolean).join(' ');
      const common = { id: `f-${f.key}`, name: f.key, 'aria-describedby': described };
      let input;
      if (f.type === 'textarea') input = h('textarea', Object.assign(common, { rows: 3 }));
      else if (f.type === 'select') input = h('select', common, f.options.map(([v, l]) => h('option', { value: v }, l)));
      else input = h('input', Object.assign(common, { type: f.type, step: f.step, inputmode: f.type === 'number' ? 'decimal' : null }));
      inputs[f.key] = input;
      return h('div', { class: 'field', id: `field-${f.key}`, 'data-path': f.path },
        h('label', { for: `f-${f.key}` }, f.label), input,
        f.hint ? h('p', { class: 'hint', id: `f-${f.key}-hint` }, f.hint) : null,
        h('p', { class: 'error', id: `f-${f.key}-error` }));
    });
    const byKey = Object.fromEntries(FIELDS.map((f, i) => [f.key, fieldEls[i]]));
    const showHealthFields = () => {
      const p = inputs['hc-protocol'].value;
      for (const f of FIELDS) if (f.when) byKey[f.key].hidden = !f.when.includes(p);
    };
    inputs['hc-protocol'].addEventListener('change', showHealthFields);

    const jsonArea = h('textarea', { id: 'f-json', rows: 22, spellcheck: 'false', 'aria-describedby': 'f-json-error' });
    const jsonField = h('div', { class: 'field', id: 'field-json', hidden: true },
      h('label', { for: 'f-json' }, 'App definition (JSON)'), jsonArea, h('p', { class: 'error', id: 'f-json-error' }));
    const formFields = h('div', {},
      byKey.id, byKey.cmd,
      h('div', { class: 'row' }, byKey.instances, byKey.cpus, byKey.mem, byKey.disk, byKey.ports),
      h('div', { class: 'row' }, byKey['hc-protocol'], byKey['hc-command'], byKey['hc-path'], byKey['hc-interval'], byKey['hc-grace']));

    const formBtn = h('button', { type: 'button', id: 'mode-form', 'aria-pressed': 'true', onclick: () => setMode('form') }, 'Form');
    const jsonBtn = h('button', { type: 'button', id: 'mode-json', 'aria-pressed': 'false', onclick: () => setMode('json') }, 'JSON');
    const review = h('div', { id: 'review', hidden: true });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'editor-submit' }, editing ? 'Review changes' : 'Create');
    const form = h('form', { class: 'editor', novalidate: true, onsubmit: (e) => { e.preventDefault(); save(false); } },
      h('div', { class: 'bar', role: 'group', 'aria-label': 'Edit as' }, formBtn, jsonBtn),
      general, formFields, jsonField,
      h('div', { class: 'bar' }, submit, h('a', { class: 'button', href: editing ? appHash(appId) : '#/services' }, 'Cancel')));
    const el = h('section', {},
      h('p', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), editing ? [' / ', h('a', { href: appHash(appId) }, appId)] : null),
      h('h1', { tabindex: -1 }, editing ? `Edit ${appId}` : 'Create a service'), form, review);

    function fillForm(d) {
      const hc = (d.healthChecks || [])[0] || {};
      const val = (x) => (x == null ? '' : String(x));
      inputs.id.value = val(d.id);
      inputs.cmd.value = val(d.cmd);
      for (const k of ['instances', 'cpus', 'mem', 'disk']) inputs[k].value = val(d[k]);
      inputs.ports.value = String(Array.isArray(d.portDefinitions) ? d.portDefinitions.length : Array.isArray(d.ports) ? d.ports.length : 1);
      inputs['hc-protocol'].value = hc.protocol || '';
      inputs['hc-command'].value = hc.command ? val(hc.command.value) : '';
      inputs['hc-path'].value = val(hc.path);
      inputs['hc-interval'].value = val(hc.intervalSeconds != null ? hc.intervalSeconds : 2);
      inputs['hc-grace'].value = val(hc.gracePeriodSeconds != null ? hc.gracePeriodSeconds : 10);
      showHealthFields();
    }

    // The definition with the form's values written into it; other fields are kept as they are.
    function readForm() {
      const d = JSON.parse(JSON.stringify(def || {}));
      const v = (k) => inputs[k].value.trim();
      const setNum = (k) => { if (v(k) === '') delete d[k]; else d[k] = Number(v(k)); };
      d.id = v('id');
      if (inputs.cmd.value.trim()) d.cmd = inputs.cmd.value; else delete d.cmd;
      for (const k of ['instances', 'cpus', 'mem', 'disk']) setNum(k);
      const have = Array.isArray(d.portDefinitions) ? d.portDefinitions.length : Array.isArray(d.ports) ? d.ports.length : 1;
      const n = v('ports') === '' ? have : Number(v('ports'));
      if (n !== have) {
        const pd = (d.portDefinitions || []).slice(0, Math.max(0, n));
        while (pd.length < n) pd.push({ port: 0, protocol: 'tcp' });
        delete d.ports;
        d.portDefinitions = Number.isInteger(n) && n >= 0 ? pd : n;
      }
      const protocol = v('hc-protocol');
      const rest = (d.healthChecks || []).slice(1);
      if (!protocol) {
        if (rest.length) d.healthChecks = rest; else delete d.healthChecks;
      } else {
        const old = (d.healthChecks || [])[0] || {};
        const hc = Object.assign({}, old, { protocol });
        if (old.delaySeconds == null && !old.protocol) hc.delaySeconds = 1;
        if (protocol === 'COMMAND') { hc.command = { value: v('hc-command') }; delete hc.path; delete hc.portIndex; }
        else {
          delete hc.command;
          if (protocol.endsWith('HTTP')) hc.path = v('hc-path') || '/'; else delete hc.path;
          if (hc.port == null && hc.portIndex == null) hc.portIndex = 0;
        }
        hc.intervalSeconds = v('hc-interval') === '' ? 10 : Number(v('hc-interval'));
        hc.gracePeriodSeconds = v('hc-grace') === '' ? 300 : Number(v('hc-grace'));
        d.healthChecks = [hc, ...rest];
      }
      return d;
    }

    // Syncs `def` from whichever view is shown; false (with the error shown) if the JSON is bad.
    function capture() {
      if (mode === 'form') { def = readForm(); return true; }
      try {
        const parsed = JSON.parse(jsonArea.value);
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the definition must be a JSON object');
        def = parsed;
        return true;
      } catch (e) {
        showErrors([{ path: '/', errors: [`Not valid JSON: ${e.message}`] }]);
        return false;
      }
    }

    function setMode(m) {
      if (m === mode || !capture()) return;
      clearErrors();
      mode = m;
      if (m === 'json') jsonArea.value = JSON.stringify(def, null, 2); else fillForm(def);
      formFields.hidden = m !== 'form';
      jsonField.hidden = m !== 'json';
      formBtn.setAttribute('aria-pressed', String(m === 'form'));
      jsonBtn.setAttribute('aria-pressed', String(m === 'json'));
    }

    function clearErrors() {
      say(general, '');
      for (const e of el.querySelectorAll('.field .error')) e.textContent = '';
      for (const e of el.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
    }

    // Marathon's 422 details, each next to its field (JSON view: under the text), the rest on top.
    function showErrors(details) {
      clearErrors();
      const loose = [];
      let first = null;
      for (const d of details) {
        const text = (d.errors || []).join('; ') || 'invalid';
        let target = null;
        if (mode === 'json') target = 'json';
        else {
          let best = -1;
          for (const f of FIELDS) {
            if ((d.path === f.path || (d.path || '').startsWith(`${f.path}/`)) && f.path.length > best && !byKey[f.key].hidden) {
              best = f.path.length;
              target = f.key;
            }
          }
        }
        if (!target) { loose.push(`${d.path}: ${text}`); continue; }
        const err = document.getElementById(`f-${target}-error`);
        const line = mode === 'json' ? `${d.path}: ${text}` : text;
        err.textContent = err.textContent ? `${err.textContent} ${line}` : line;
        const input = target === 'json' ? jsonArea : inputs[target];
        input.setAttribute('aria-invalid', 'true');
        if (!first) first = input;
      }
      if (loose.length || details.length) {
        say(general, `The service scheduler refused the definition (${details.length} problem${details.length === 1 ? '' : 's'})${loose.length ? ': ' + loose.join('; ') : '; see the marked fields.'}`, true);
      }
      if (first) first.focus();
    }

    async function send(force) {
      const url = editing ? `/marathon/v2/apps/${appPath(appId)}?partialUpdate=false${force ? '&force=true' : ''}` : '/marathon/v2/apps';
      say(general, editing ? 'Applying…' : 'Creating…');
      const r = await api(editing ? 'PUT' : 'POST', url, def);
      if (r.ok) {
        const id = editing ? appId : (r.data && r.data.id) || def.id;
        location.hash = appHash(id);
        return;
      }
      review.hidden = true;
      form.hidden = false;
      if (r.status === 422 && r.data && Array.isArray(r.data.details)) { showErrors(r.data.details); return; }
      say(general, problem(r), true);
      if (r.status === 409 && editing) {
        general.append(' ', h('button', { type: 'button', id: 'force', onclick: () => send(true) }, 'Apply anyway (stops the running deployment)'));
      }
    }

    function save() {
      if (!capture()) return;
      clearErrors();
      if (!editing) { send(false); return; }
      const changes = diff(original, def);
      form.hidden = true;
      review.hidden = false;
      fill(review, h('h2', { tabindex: -1, id: 'review-title' }, 'Review changes'),
        changes.length ? h('ul', { class: 'diff', id: 'diff' }, changes.map((c) => h('li', {},
          h('code', {}, c.path), ': ',
          c.before === undefined ? '' : h('del', {}, c.before), c.before !== undefined && c.after !== undefined ? ' → ' : '',
          c.after === undefined ? h('span', { class: 'muted' }, ' (removed)') : h('ins', {}, c.after))))
          : h('p', { class: 'empty' }, 'Nothing changes.'),
        h('div', { class: 'bar' },
          h('button', { type: 'button', class: 'primary', id: 'apply', disabled: !changes.length, onclick: () => send(false) }, 'Apply'),
          h('button', { type: 'button', onclick: () => { review.hidden = true; form.hidden = false; submit.focus(); } }, 'Back to editing')));
      review.querySelector('h2').focus();
    }

    if (!editing) fillForm(def);
    return {
      el, title: editing ? `Edit ${appId}` : 'Create a service', needs: ['marathon'],
      async load() {
        if (!editing || def) return;
        const r = await api('GET', `/marathon/v2/apps/${appPath(appId)}`);
        if (!r.ok) { say(general, problem(r), true); return; }
        original = editable(r.data.app);
        def = JSON.parse(JSON.stringify(original));
        fillForm(def);
      },
    };
  }

  // ---------- Task detail

  const TAIL_BYTES = 64 * 1024;

  function findTask(state, taskId) {
    for (const f of [...(state.frameworks || []), ...(state.completed_frameworks || [])]) {
      for (const t of [...(f.tasks || []), ...(f.completed_tasks || [])]) {
        if (t.id === taskId) return { task: t, framework: f };
      }
    }
    return null;
  }

  function taskPage(taskId) {
    let found = null;
    let sandbox = null;
    let sandboxError = null;
    let dir = null;
    let file = 'stdout';
    let appId;
    const info = h('div', { id: 'task-info' });
    const history = h('div', { id: 'task-history' });
    const files = h('div', { id: 'sandbox' });
    const logMsg = h('div', { class: 'notice', role: 'status' });
    const pre = h('pre', { class: 'log', id: 'log', tabindex: 0, 'aria-label': 'File contents', 'aria-live': 'off' });
    const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
    const fileBtns = ['stdout', 'stderr'].map((name) => h('button', {
      type: 'button', id: `show-${name}`, 'aria-pressed': String(name === file), onclick: () => open(name),
    }, name));
    const viewing = h('span', { class: 'mono muted', id: 'viewing' });
    const el = h('section', {},
      h('p', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / ', h('span', { id: 'task-app' }), ' / task'),
      h('h1', { tabindex: -1, class: 'mono' }, taskId), info,
      h('h2', {}, 'Output'),
      h('div', { class: 'bar' }, fileBtns,
        h('label', {}, follow, ' Follow (new lines appear as they are written)'), viewing),
      logMsg, pre,
      h('h2', {}, 'Status history'), history,
      h('h2', {}, 'Sandbox'), files);

    // --- the viewer: the file's last 64 KiB, then every second whatever was appended.
    let gen = 0;
    let offset = 0;
    let followTimer = null;
    const enc = new TextEncoder();

    function readUrl(path, off, len) {
      return `/agent/${encodeURIComponent(found.task.slave_id)}/files/read?path=${encodeURIComponent(path)}&offset=${off}${len ? `&length=${len}` : ''}`;
    }

    function appendText(text) {
      if (!text) return;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.append(text);
      if (pre.textContent.length > 2000000) pre.textContent = pre.textContent.slice(-1000000);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }

    async function readMore(my, dropFirstLine) {
      for (let i = 0; i < 32; i++) {
        const r = await api('GET', readUrl(`${sandbox}/${file}`, offset, 65536));
        if (my !== gen) return;
        if (!r.ok || !r.data) { say(logMsg, `Cannot read ${file}: ${r.message}`, true); return; }
        let text = r.data.data || '';
        const bytes = enc.encode(text).length;
        offset += bytes;
        if (dropFirstLine) { const nl = text.indexOf('\n'); text = nl >= 0 ? text.slice(nl + 1) : ''; dropFirstLine = false; }
        appendText(text);
        if (bytes < 65536) return;
      }
    }

    async function open(name) {
      file = name;
      for (const b of fileBtns) b.setAttribute('aria-pressed', String(b.textContent === name));
      const my = ++gen;
      pre.textContent = '';
      viewing.textContent = name;
      if (!found || !sandbox) return;
      const r = await api('GET', readUrl(`${sandbox}/${name}`, -1));
      if (my !== gen) return;
      if (!r.ok || !r.data) { say(logMsg, `Cannot read ${name}: ${r.message}`, true); return; }
      say(logMsg, '');
      offset = Math.max(0, r.data.offset - TAIL_BYTES);
      await readMore(my, offset > 0);
      pre.scrollTop = pre.scrollHeight;
      pre.setAttribute('data-loaded', name);
      schedule(my);
    }

    function schedule(my) {
      clearTimeout(followTimer);
      followTimer = setTimeout(async () => {
        if (my !== gen || page === null || page.el !== el) return;
        if (follow.checked) await readMore(my, false);
        schedule(my);
      }, 1000);
    }

    async function findSandbox() {
      const t = found.task;
      const r = await api('GET', `/agent/${encodeURIComponent(t.slave_id)}/state`);
      if (!r.ok || !r.data) { sandboxError = `The agent's state is not available: ${r.message}`; return; }
      const executor = t.executor_id || t.id;
      for (const f of [...(r.data.frameworks || []), ...(r.data.completed_frameworks || [])]) {
        if (f.id !== t.framework_id) continue;
        for (const e of [...(f.executors || []), ...(f.completed_executors || [])]) {
          if (e.id === executor && e.directory) { sandbox = e.directory; sandboxError = null; }
        }
      }
      if (!sandbox) sandboxError = 'The agent no longer knows this task\'s sandbox.';
    }

    async function browse(path) {
      dir = path;
      const r = await api('GET', `/agent/${encodeURIComponent(found.task.slave_id)}/files/browse?path=${encodeURIComponent(path)}`);
      const rel = path === sandbox ? '' : path.slice(sandbox.length + 1);
      const up = path !== sandbox ? h('button', { type: 'button', 'data-key': 'up', onclick: () => browse(path.slice(0, path.lastIndexOf('/'))) }, 'Up one directory') : null;
      if (!r.ok || !Array.isArray(r.data)) { fill(files, up, h('p', { class: 'notice bad' }, r.message)); return; }
      fill(files, h('p', {}, 'Directory: ', h('code', {}, `sandbox/${rel}`), ' ', up),
        table('Files in the sandbox', ['Name', '#Size', 'Modified', 'Mode'], r.data.map((e) => {
          const name = e.path.slice(e.path.lastIndexOf('/') + 1);
          const isDir = e.mode.startsWith('d');
          const full = `${path}/${name}`;
          const open1 = isDir
            ? h('button', { type: 'button', class: 'link', 'data-key': `dir:${full}`, onclick: () => browse(full) }, `${name}/`)
            : h('button', { type: 'button', class: 'link', 'data-key': `file:${full}`, onclick: () => openPath(full) }, name);
          return h('tr', {}, h('th', { scope: 'row' }, open1), h('td', { class: 'num' }, e.size), h('td', {}, when(e.mtime)), h('td', { class: 'mono' }, e.mode));
        }), 'The directory is empty.'));
    }

    // Opens any sandbox file in the viewer.
    function openPath(full) {
      open(full.slice(sandbox.length + 1));
      pre.focus();
    }

    return {
      el, title: `Task ${taskId}`, needs: ['master'],
      async load() {
        const jobs = [loadMaster()];
        if (appId === undefined) {
          jobs.push(api('GET', '/marathon/v2/tasks').then((r) => {
            const t = r.ok && r.data ? (r.data.tasks || []).find((x) => x.id === taskId) : null;
            appId = t ? t.appId : null;
          }));
        }
        await Promise.all(jobs);
      },
      update() {
        if (!data.master) return;
        const was = found;
        found = findTask(data.master, taskId);
        if (!found) { fill(info, h('p', { class: 'notice bad' }, 'The master does not know this task (any more).')); return; }
        const t = found.task;
        const agent = (data.master.slaves || []).find((s) => s.id === t.slave_id);
        fill(el.querySelector('#task-app'), appId ? h('a', { href: appHash(appId) }, appId) : 'task');
        const r = t.resources || {};
        fill(info, facts([
          ['State', badge(t.state)],
          ['Health', t.healthy === undefined ? '—' : badge(t.healthy ? 'healthy' : 'unhealthy')],
          ['Agent', agent ? `${agent.hostname}:${agent.port} (${agent.id})` : t.slave_id],
          ['Framework', `${found.framework.name} (${found.framework.id})`],
          ['Resources', `${num(r.cpus)} CPUs, ${mib(r.mem)} memory${r.ports ? `, ports ${r.ports}` : ''}`],
        ]));
        fill(history, table('Status updates, oldest first', ['State', 'When', 'Healthy'],
          (t.statuses || []).map((s) => h('tr', {}, h('td', {}, badge(s.state)), h('td', {}, when(s.timestamp)),
            h('td', {}, s.healthy === undefined ? '—' : String(s.healthy)))), 'No status updates.'));
        if (!was) {
          findSandbox().then(() => {
            if (sandboxError) { fill(files, h('p', { class: 'notice bad' }, sandboxError)); say(logMsg, sandboxError, true); return; }
            browse(sandbox);
            open(file);
          });
        }
      },
      leave() { gen++; clearTimeout(followTimer); },
    };
  }

  // ---------- Cluster

  const KINDS = ['cpus', 'mem', 'disk', 'gpus'];

  function bar(kind, used, total) {
    const text = kind === 'cpus' || kind === 'gpus' ? `${num(used)} / ${num(total)}` : `${mib(used)} / ${mib(total)}`;
    return h('div', { class: 'meter' },
      h('meter', { min: 0, max: total || 1, value: used || 0, 'aria-label': `${kind} used: ${text}` }), h('span', {}, text));
  }

  function clusterPage() {
    let info = null;
    const master = h('div', { id: 'master-info' });
    const agents = h('div', { id: 'agents' });
    const frameworks = h('div', { id: 'frameworks' });
    const el = h('section', {}, h('h1', { tabindex: -1 }, 'Cluster'), master,
      h('h2', {}, 'Agents'), agents, h('h2', {}, 'Frameworks'), frameworks);
    return {
      el, title: 'Cluster', needs: ['master'],
      async load() {
        const jobs = [loadMaster()];
        if (!info) jobs.push(api('GET', '/marathon/v2/info').then((r) => { info = r; }));
        await Promise.all(jobs);
      },
      update() {
        const s = data.master;
        if (!s) return;
        const sched = info && info.ok && info.data
          ? `Marathon API ${info.data.version} at ${info.data.leader}, framework ${info.data.frameworkId || '(not registered yet)'}`
          : info ? `not reachable through the master: ${info.message}` : '…';
        fill(master, facts([
          ['Leader', s.leader], ['Version', `Mesos API ${s.version}, Mantle ${s.mantle_version || ''}`],
          ['Master ID', h('span', { class: 'mono' }, s.id)], ['Started', when(s.start_time)],
          ['Agents', `${s.activated_slaves} active, ${s.deactivated_slaves} inactive`],
          ['Service scheduler', sched],
        ]));
        const slaves = s.slaves || [];
        const total = {};
        for (const k of KINDS) total[k] = slaves.reduce((t, a) => t + ((a.resources || {})[k] || 0), 0);
        fill(agents, table('Agents and their resources (used of total)', ['Agent', 'Address', 'Status', 'CPUs', 'Memory', 'Disk', 'Attributes'],
          slaves.map((a) => {
            const u = a.used_resources || {}, r = a.resources || {};
            const attrs = Object.entries(a.attributes || {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
            return h('tr', { 'data-agent': a.id },
              h('th', { scope: 'row', class: 'mono' }, a.id), h('td', {}, `${a.hostname}:${a.port}`),
              h('td', {}, badge(a.active ? 'running' : 'unhealthy', a.active ? 'active' : 'disconnected')),
              h('td', {}, bar('cpus', u.cpus, r.cpus)), h('td', {}, bar('mem', u.mem, r.mem)), h('td', {}, bar('disk', u.disk, r.disk)),
              h('td', {}, attrs.join(', ') || '—'));
          }), 'No agents are registered.'));
        // DRF: a framework's dominant share is its largest share of any resource the cluster has
        // (allocated = used + offered, as the allocator counts it).
        fill(frameworks, table('Frameworks and their dominant resource shares', ['Framework', 'ID', 'Role', 'Status', '#Tasks', 'Allocated', 'Dominant share (DRF)'],
          (s.frameworks || []).map((f) => {
            const alloc = f.resources || {};
            let share = 0, kind = null;
            for (const k of KINDS) {
              if (total[k] > 0 && (alloc[k] || 0) / total[k] > share) { share = alloc[k] / total[k]; kind = k; }
            }
            return h('tr', { 'data-framework': f.id },
              h('th', { scope: 'row' }, f.name), h('td', { class: 'mono' }, f.id), h('td', {}, (f.roles || [f.role]).join(', ')),
              h('td', {}, badge(f.active ? 'running' : 'suspended', f.active ? 'active' : 'inactive')),
              h('td', { class: 'num' }, (f.tasks || []).length),
              h('td', {}, `${num(alloc.cpus || 0)} CPUs, ${mib(alloc.mem || 0)}`),
              h('td', { class: 'share' }, kind ? `${pct(share)} of ${kind}` : '0%'));
          }), 'No frameworks are registered.'));
      },
    };
  }

  // ---------- routing

  function notFound(hash) {
    return { el: h('section', {}, h('h1', { tabindex: -1 }, 'Not found'), h('p', {}, `Nothing at ${hash}. `, h('a', { href: '#/services' }, 'Services'))) };
  }

  function route() {
    const hash = location.hash || '#/services';
    if (!hash.startsWith('#/')) return null;
    const [name, ...rest] = hash.slice(2).split('/');
    const arg = rest.map((s) => { try { return decodeURIComponent(s); } catch (e) { return s; } }).join('/');
    switch (name) {
      case '': case 'services': return servicesPage();
      case 'new': return editorPage(null);
      case 'edit': return editorPage(`/${arg}`);
      case 'app': return appPage(`/${arg}`);
      case 'task': return taskPage(arg);
      case 'cluster': return clusterPage();
      default: return notFound(hash);
    }
  }

  function go(userAction) {
    const next = route();
    if (!next) return;
    if (page && page.leave) page.leave();
    page = next;
    main.replaceChildren(page.el);
    document.title = `${page.title || 'Mantle'} · Mantle`;
    const section = (location.hash.split('/')[1] || 'services');
    for (const a of document.querySelectorAll('[data-nav]')) {
      const current = a.dataset.nav === section || (a.dataset.nav === 'services' && ['app', 'new', 'edit', 'task'].includes(section));
      if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    showBanner();
    if (userAction) { const t = main.querySelector('h1'); if (t) t.focus(); }
    refresh('route');
  }

  window.addEventListener('hashchange', () => go(true));
  setInterval(() => { ticks++; refresh('timer'); }, 2000);
  showLive();
  connectEvents();
  go(false);
})();
