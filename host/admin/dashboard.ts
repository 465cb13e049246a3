/**
 * The dashboard: one static page (no framework, no build step, ~6 KB) that polls the
 * admin API every 5 s. Everything shown comes from clients (HELO names, addresses), so
 * the page builds its DOM with textContent only, never innerHTML. With admin.token set,
 * open it as http://HOST:PORT/#token=TOKEN: the token stays in the page (sessionStorage)
 * and goes out as a Bearer header, never in a URL the server logs.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
th { color: #666; font-weight: 600; } .muted { color: #777; } .error { color: #b00020; }
section { max-width: 70em; } button { font-size: .85em; } svg { background: #fafafa; }
</style></head><body>
<h1>Portcullis</h1>
<div id="status" class="muted">loading…</div>
<section><h2>Live connections</h2><table id="sessions"></table></section>
<section><h2>Refusals per rule, last 60 minutes</h2><svg id="chart" width="720" height="160" role="img" aria-label="refusals per rule per minute"></svg><div id="axis" class="muted"></div><div id="legend"></div></section>
<section><h2>Top refused clients, last hour</h2><table id="top"></table></section>
<section><h2>Blacklist</h2><input id="search" placeholder="search address or reason" size="30"> <table id="blacklist"></table></section>
<section><h2>Queue</h2><div id="queue"></div></section>
<section><h2>Shadow rules: what they would have refused</h2><table id="shadow"></table></section>
<script>
const token = (location.hash.match(/token=([^&]+)/) || [])[1] || sessionStorage.getItem('portcullis-token');
if (token) { sessionStorage.setItem('portcullis-token', token); history.replaceState(null, '', location.pathname); }
const headers = token ? { Authorization: 'Bearer ' + token } : {};
const $ = (id) => document.getElementById(id);
function el(tag, text, attrs) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); Object.assign(e, attrs || {}); return e; }
function row(cells, tag) { const tr = el('tr'); for (const c of cells) { const td = el(tag || 'td'); if (c instanceof Node) td.append(c); else td.textContent = c == null ? '' : String(c); tr.append(td); } return tr; }
function fill(table, head, rows, empty) { table.replaceChildren(row(head, 'th'), ...rows); if (!rows.length) table.append(row([empty])); }
async function api(path, method) {
  const r = await fetch(path, { method: method || 'GET', headers: method ? { ...headers, 'X-Portcullis-Admin': '1' } : headers });
  if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + (await r.text()));
  return r.json();
}
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
function chart(window) {
  const svg = $('chart'), W = 720, H = 160, bw = W / window.length;
  const rules = [...new Set(window.flatMap((s) => Object.keys(s.refusedBy)))].sort();
  const max = Math.max(1, ...window.map((s) => Object.values(s.refusedBy).reduce((a, b) => a + b, 0)));
  svg.replaceChildren();
  window.forEach((s, i) => {
    let y = H;
    rules.forEach((r, k) => {
      const n = s.refusedBy[r] || 0; if (!n) return;
      const h = (n / max) * (H - 10); y -= h;
      const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      for (const [a, v] of Object.entries({ x: i * bw + 1, y, width: bw - 2, height: h, fill: COLORS[k % COLORS.length] })) rect.setAttribute(a, v);
      const t = document.createElementNS('http://www.w3.org/2000/svg', 'title'); t.textContent = s.start.slice(11, 16) + ' ' + r + ': ' + n; rect.append(t);
      svg.append(rect);
    });
  });
  $('axis').textContent = 'one bar per minute, ' + window[0].start.slice(11, 16) + ' to ' + window[window.length - 1].start.slice(11, 16) + ' UTC; highest ' + max + ' refusals in a minute';
  $('legend').replaceChildren(...(rules.length ? rules.map((r, k) => { const s = el('span', '■ ' + r + '  '); s.style.color = COLORS[k % COLORS.length]; s.dataset.rule = r; return s; }) : [el('span', 'no refusals in the last hour', { className: 'muted' })]));
}
let blacklist = [];
function showBlacklist() {
  const q = $('search').value.toLowerCase();
  const rows = blacklist.filter((e) => !q || e.ip.includes(q) || e.reason.toLowerCase().includes(q)).map((e) => {
    const b = el('button', 'Remove'); b.onclick = () => api('/api/blacklist?ip=' + encodeURIComponent(e.ip), 'DELETE').then(refresh, report);
    return row([e.ip, e.reason, e.rule, e.expires.replace('T', ' ').slice(0, 19), b]);
  });
  fill($('blacklist'), ['address', 'reason', 'by', 'until (UTC)', ''], rows, 'empty');
}
$('search').oninput = showBlacklist;
function report(e) { $('status').textContent = String(e.message || e); $('status').className = 'error'; }
async function refresh() {
  try {
    const [rules, sessions, stats, bl, queue, shadow] = await Promise.all(['/api/rules', '/api/sessions', '/api/stats', '/api/blacklist', '/api/queue', '/api/shadow'].map((p) => api(p)));
    const st = $('status');
    st.className = rules.lastError ? 'error' : 'muted';
    st.textContent = 'rule set version ' + rules.version + ', ' + rules.rules.length + ' rules; reloads ' + rules.reloads.ok + ' ok, ' + rules.reloads.failed + ' failed' +
      (rules.lastError ? '; last reload failed: ' + rules.lastError.problems.join('; ') : '');
    fill($('sessions'), ['session', 'client', 'HELO', 'user', 'since (UTC)', 'sender', 'rcpts', ''], sessions.map((s) => {
      const b = el('button', 'Kill'); b.onclick = () => api('/api/sessions/kill?id=' + encodeURIComponent(s.id), 'POST').then(refresh, report);
      return row([s.id, (s.ptr || 'unknown') + '[' + s.ip + ']', s.helo, s.user, s.since.slice(11, 19), s.mailFrom, s.rcpts, b]);
    }), 'none');
    chart(stats.window);
    fill($('top'), ['client', 'refusals'], stats.topRefused.map((t) => row([t.ip, t.refusals])), 'none');
    blacklist = bl; showBlacklist();
    $('queue').textContent = queue.spool + ' waiting for delivery, ' + queue.quarantine + ' in quarantine';
    fill($('shadow'), ['rule', 'sessions', 'refusals', 'latest'], shadow.map((r) => row([r.rule, r.sessions, r.refusals, r.samples[0] ? r.samples[0].ip + ' at ' + r.samples[0].phase + ': ' + r.samples[0].would : ''])), 'no shadow rule has refused anything');
  } catch (e) { report(e); }
}
refresh(); setInterval(refresh, 5000);
</script></body></html>
`;
