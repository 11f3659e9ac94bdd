/// The dashboard the gateway serves at `/`: plain HTML, CSS and JavaScript kept in the binary (no
/// build step, no CDN, nothing fetched from anywhere but this gateway). One page with hash routes:
/// `#/` lists the registered services and the registry's changes as they happen, `#/service/NAME`
/// shows a service's versions, nodes (with their health and stats) and endpoints (with a form to
/// call each one, or stream it over Server-Sent Events), and `#/events` publishes to a topic and
/// watches one. The script talks only to the gateway's own JSON and SSE routes (`/services`,
/// `/services/NAME`, `/stats/NAME`, `/api/SERVICE/ENDPOINT`, `/publish/TOPIC`, `/events/registry`,
/// `/events/topic/TOPIC`); the ids and data attributes browser tests rely on are listed at the top
/// of `javascript`.
///
/// The gateway serves `html` at `/` (`text/html; charset=utf-8`), `css` at `/dashboard.css`
/// (`text/css; charset=utf-8`) and `javascript` at `/dashboard.js` (`text/javascript; charset=utf-8`).
enum DashboardAssets {
    static let html: String = #"""
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>swift-micro dashboard</title>
          <link rel="icon" href="data:,">
          <link rel="stylesheet" href="/dashboard.css">
          <script src="/dashboard.js" defer></script>
        </head>
        <body>
          <header class="top">
            <a class="brand" href="#/">swift-micro</a>
            <nav>
              <a href="#/" data-nav="services">Services</a>
              <a href="#/" data-nav="service" hidden>Service</a>
              <a href="#/events" data-nav="events">Events</a>
            </nav>
            <span id="live" class="live" data-state="connecting" title="The registry event stream">registry: connecting…</span>
          </header>

          <main>
            <section id="page-services" data-page="services">
              <div class="columns">
                <div class="card">
                  <div class="card-head">
                    <h1>Services</h1>
                    <span id="services-count" class="muted"></span>
                  </div>
                  <p id="services-status" class="status error" hidden></p>
                  <ul id="services" class="service-list"></ul>
                  <p id="services-empty" class="muted" hidden>No services are registered.</p>
                </div>
                <div class="card">
                  <div class="card-head">
                    <h2>Registry changes</h2>
                    <button type="button" id="registry-log-clear" class="small">Clear</button>
                  </div>
                  <p id="registry-log-empty" class="muted">Changes show here as services come and go.</p>
                  <ol id="registry-log" class="log"></ol>
                </div>
              </div>
            </section>

            <section id="page-service" data-page="service" hidden>
              <div class="card">
                <p class="crumbs"><a href="#/">Services</a> /</p>
                <h1 id="service-name"></h1>
                <p id="service-error" class="status error" hidden></p>
                <div id="service-versions" class="versions"></div>
              </div>
              <div class="card">
                <div class="card-head">
                  <h2>Nodes</h2>
                  <span id="stats-updated" class="muted"></span>
                  <button type="button" id="stats-refresh" class="small">Refresh</button>
                </div>
                <div id="nodes" class="nodes"></div>
              </div>
              <h2 class="section-title">Endpoints</h2>
              <div id="endpoints" class="endpoints"></div>
            </section>

            <section id="page-events" data-page="events" hidden>
              <div class="columns">
                <form id="publish-form" class="card" autocomplete="off">
                  <h2>Publish</h2>
                  <label for="publish-topic">Topic</label>
                  <input id="publish-topic" type="text" placeholder="e.g. go.micro.topic.example" spellcheck="false">
                  <label for="publish-body">Message (JSON)</label>
                  <textarea id="publish-body" rows="8" spellcheck="false">{}</textarea>
                  <div class="actions">
                    <button id="publish-button" type="submit" class="primary">Publish</button>
                  </div>
                  <div id="publish-result" class="result" aria-live="polite"></div>
                </form>
                <div class="card">
                  <form id="watch-form" autocomplete="off">
                    <h2>Watch</h2>
                    <label for="watch-topic">Topic</label>
                    <input id="watch-topic" type="text" placeholder="e.g. go.micro.topic.example" spellcheck="false">
                    <div class="actions">
                      <button id="watch-button" type="submit" class="primary">Watch</button>
                      <button id="watch-stop" type="button" disabled>Stop</button>
                      <button id="watch-clear" type="button">Clear</button>
                      <span id="watch-status" class="muted" data-state="idle">not watching</span>
                    </div>
                  </form>
                  <ol id="watch-messages" class="messages"></ol>
                </div>
              </div>
            </section>
          </main>

          <footer>
            swift-micro dashboard · everything on this page comes from this gateway · <span id="footer-origin"></span>
          </footer>
        </body>
        </html>
        """#

    static let css: String = #"""
        /* swift-micro dashboard: one light theme, system fonts, no external resources. */
        :root {
          --bg: #f3f4f7;
          --card: #ffffff;
          --text: #1c2230;
          --muted: #667085;
          --border: #d8dce4;
          --accent: #2c5bc9;
          --accent-soft: #e8eefb;
          --ok: #17723a;
          --ok-bg: #ecf8f0;
          --error: #b42318;
          --error-bg: #fdf0ef;
          --warn: #a15c07;
          --warn-bg: #fff6e5;
          --header: #1e2940;
          --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
          font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
          font-size: 15px;
          line-height: 1.45;
          color: var(--text);
          background: var(--bg);
        }

        * { box-sizing: border-box; }
        [hidden] { display: none !important; }

        body {
          margin: 0;
          min-height: 100vh;
          display: flex;
          flex-direction: column;
        }

        a { color: var(--accent); text-decoration: none; }
        a:hover { text-decoration: underline; }
        h1, h2, h3, h4 { margin: 0 0 .5rem; line-height: 1.25; }
        h1 { font-size: 1.45rem; }
        h2 { font-size: 1.15rem; }
        h3 { font-size: 1.02rem; }
        h4 { font-size: .9rem; color: var(--muted); font-weight: 600; }
        code, pre, textarea, .mono { font-family: var(--mono); font-size: .86rem; }
        pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
        .muted { color: var(--muted); }
        .small { font-size: .8rem; padding: .2rem .6rem; }

        /* header and footer */
        header.top {
          position: sticky;
          top: 0;
          z-index: 10;
          display: flex;
          align-items: center;
          gap: 1.5rem;
          padding: .55rem 1.5rem;
          background: var(--header);
          color: #fff;
        }
        .brand { color: #fff; font-weight: 700; letter-spacing: .02em; }
        nav { display: flex; gap: .25rem; flex: 1; min-width: 0; }
        nav a {
          color: #cfd7ea;
          padding: .3rem .75rem;
          border-radius: 6px;
          white-space: nowrap;
          overflow: hidden;
          text-overflow: ellipsis;
          max-width: 16rem;
        }
        nav a:hover { background: rgba(255, 255, 255, .08); text-decoration: none; }
        nav a.active { background: rgba(255, 255, 255, .16); color: #fff; }
        .live { font-size: .82rem; color: #cfd7ea; white-space: nowrap; }
        .live::before {
          content: "";
          display: inline-block;
          width: .6rem;
          height: .6rem;
          margin-right: .4rem;
          border-radius: 50%;
          background: #e0a11b;
        }
        .live[data-state="open"]::before { background: #3ccf6e; }
        .live[data-state="closed"]::before { background: #ef5a4c; }

        footer {
          padding: .8rem 1.5rem;
          font-size: .8rem;
          color: var(--muted);
          text-align: center;
          border-top: 1px solid var(--border);
        }

        main {
          flex: 1;
          width: 100%;
          max-width: 1240px;
          margin: 0 auto;
          padding: 1.25rem 1.5rem;
        }

        /* building blocks */
        .card {
          background: var(--card);
          border: 1px solid var(--border);
          border-radius: 8px;
          padding: 1rem 1.25rem;
          margin-bottom: 1rem;
          min-width: 0;
        }
        .card-head { display: flex; align-items: baseline; gap: .75rem; margin-bottom: .5rem; }
        .card-head h1, .card-head h2 { margin: 0; }
        .card-head > :last-child { margin-left: auto; }
        .columns { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1rem; align-items: start; }
        .columns > .card { margin-bottom: 0; }
        .section-title { margin: 1.25rem 0 .6rem; }
        .crumbs { margin: 0 0 .25rem; font-size: .85rem; }

        .badge {
          display: inline-block;
          padding: .05rem .5rem;
          border-radius: 999px;
          background: var(--accent-soft);
          color: var(--accent);
          font-size: .78rem;
          font-weight: 600;
          white-space: nowrap;
        }
        .badge.stream { background: var(--warn-bg); color: var(--warn); }

        button {
          font: inherit;
          font-size: .9rem;
          padding: .35rem .9rem;
          border: 1px solid var(--border);
          border-radius: 6px;
          background: #fff;
          color: var(--text);
          cursor: pointer;
        }
        button:hover:not(:disabled) { border-color: var(--accent); }
        button:disabled { opacity: .5; cursor: default; }
        button.primary, button.call, button.stream { background: var(--accent); border-color: var(--accent); color: #fff; }
        button.primary:hover:not(:disabled), button.call:hover:not(:disabled), button.stream:hover:not(:disabled) { background: #234ba8; }

        label { display: block; font-size: .85rem; font-weight: 600; margin: .6rem 0 .25rem; }
        input[type="text"], textarea {
          width: 100%;
          padding: .45rem .6rem;
          border: 1px solid var(--border);
          border-radius: 6px;
          background: #fbfcfd;
          color: var(--text);
          font: inherit;
        }
        textarea { font-family: var(--mono); font-size: .86rem; resize: vertical; min-height: 4.5rem; }
        input[type="text"]:focus, textarea:focus { outline: 2px solid var(--accent-soft); border-color: var(--accent); }
        .actions { display: flex; align-items: center; flex-wrap: wrap; gap: .5rem; margin: .6rem 0; }
        .hint { font-size: .78rem; color: var(--muted); }

        dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .1rem .75rem; margin: .4rem 0 0; font-size: .85rem; }
        dl.kv dt { color: var(--muted); }
        dl.kv dd { margin: 0; font-family: var(--mono); font-size: .82rem; word-break: break-word; }

        .status.error, .result.error, .answer.error {
          border: 1px solid #f1c0bb;
          background: var(--error-bg);
          color: var(--error);
        }
        .status { padding: .45rem .7rem; border-radius: 6px; }

        /* services page */
        .service-list { list-style: none; margin: 0; padding: 0; }
        .service-list li {
          display: flex;
          align-items: center;
          gap: .6rem;
          padding: .5rem .25rem;
          border-bottom: 1px solid #eef0f4;
        }
        .service-list li:last-child { border-bottom: 0; }
        .service-list a { font-weight: 600; }
        .service-list .versions { display: flex; gap: .3rem; flex-wrap: wrap; margin-left: auto; }

        .log { list-style: none; margin: 0; padding: 0; max-height: 26rem; overflow: auto; font-size: .86rem; }
        .log li { padding: .3rem 0; border-bottom: 1px solid #eef0f4; }
        .log time { color: var(--muted); font-family: var(--mono); font-size: .78rem; margin-right: .5rem; }
        .log .action { font-weight: 600; margin-right: .35rem; }
        .log li[data-action="create"] .action { color: var(--ok); }
        .log li[data-action="update"] .action { color: var(--accent); }
        .log li[data-action="delete"] .action { color: var(--error); }
        .log .detail { color: var(--muted); font-size: .8rem; margin-left: .35rem; }

        /* service page */
        .versions { display: flex; flex-wrap: wrap; gap: .75rem; margin-top: .5rem; }
        .version { border: 1px solid #eef0f4; border-radius: 6px; padding: .4rem .7rem; min-width: 12rem; }
        .nodes { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: .75rem; }
        .node { border: 1px solid #e6e9ef; border-radius: 8px; padding: .65rem .8rem; background: #fcfcfd; min-width: 0; }
        .node-head { display: flex; align-items: center; flex-wrap: wrap; gap: .5rem; }
        .node-id { font-weight: 600; word-break: break-all; }
        .address { color: var(--muted); font-family: var(--mono); font-size: .82rem; }
        .health {
          font-size: .75rem;
          font-weight: 700;
          letter-spacing: .03em;
          padding: .05rem .5rem;
          border-radius: 4px;
          background: #eceef2;
          color: var(--muted);
        }
        .health.serving { background: var(--ok-bg); color: var(--ok); }
        .health.not-serving { background: var(--error-bg); color: var(--error); }
        .stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(6.5rem, 1fr)); gap: .35rem .75rem; margin: .6rem 0 0; }
        .stats div { min-width: 0; }
        .stats dt { font-size: .72rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
        .stats dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
        .node-error { color: var(--error); font-size: .82rem; margin: .4rem 0 0; }
        .node details { margin-top: .4rem; font-size: .85rem; }
        .node summary { cursor: pointer; color: var(--muted); }

        .endpoints { display: flex; flex-direction: column; gap: 1rem; }
        form.endpoint {
          display: grid;
          grid-template-columns: minmax(0, 2fr) minmax(0, 3fr);
          gap: .5rem 1.25rem;
          background: var(--card);
          border: 1px solid var(--border);
          border-radius: 8px;
          padding: 1rem 1.25rem;
        }
        form.endpoint > h3 { grid-column: 1 / -1; display: flex; align-items: center; gap: .6rem; margin: 0; }
        .endpoint-name { font-family: var(--mono); font-size: 1rem; }
        .shapes { display: flex; flex-direction: column; gap: .75rem; min-width: 0; }
        .shape h4 { margin-bottom: .25rem; }
        .shape h4 code { color: var(--text); font-weight: 600; }
        ul.fields { list-style: none; margin: 0; padding-left: 1rem; border-left: 2px solid #eef0f4; font-family: var(--mono); font-size: .82rem; }
        ul.fields ul.fields { margin-top: .15rem; }
        .field { color: var(--text); }
        .type { color: #7a3db8; }
        .editor { min-width: 0; }

        .answer, .result { margin-top: .4rem; border-radius: 6px; font-size: .88rem; }
        .answer:empty, .result:empty { display: none; }
        .answer.ok, .result.ok { border: 1px solid #b7e1c3; background: var(--ok-bg); }
        .answer.pending, .answer.streaming, .answer.stopped { border: 1px solid var(--border); background: #f8f9fb; }
        .answer > *, .result > * { padding: .45rem .7rem; }
        .answer .meta, .result .meta {
          font-size: .78rem;
          color: var(--muted);
          border-bottom: 1px solid rgba(0, 0, 0, .06);
          padding-top: .3rem;
          padding-bottom: .3rem;
        }
        .answer.ok pre { color: #143d24; }
        .answer p, .result p { margin: 0; }
        .answer.error dl.kv dd, .result.error dl.kv dd { color: var(--error); }
        .chunks { list-style: none; margin: 0; max-height: 22rem; overflow: auto; }
        .chunk { display: flex; gap: .6rem; padding: .2rem 0; border-bottom: 1px dashed #e3e6ec; }
        .chunk time, .message time { color: var(--muted); font-family: var(--mono); font-size: .75rem; white-space: nowrap; }
        .end { font-size: .8rem; font-weight: 600; color: var(--ok); }

        /* events page */
        .messages { list-style: none; margin: .5rem 0 0; padding: 0; max-height: 34rem; overflow: auto; }
        .message { border: 1px solid #e6e9ef; border-radius: 6px; padding: .5rem .7rem; margin-bottom: .5rem; background: #fcfcfd; }
        .message-head { display: flex; gap: .6rem; align-items: baseline; }
        .message-head code { font-weight: 600; }
        .message pre { margin-top: .35rem; padding: .4rem .55rem; background: #f3f5f8; border-radius: 4px; }
        .message dl.kv { font-size: .78rem; }

        @media (max-width: 900px) {
          main { padding: 1rem; }
          header.top { gap: .75rem; padding: .5rem 1rem; }
          .columns, form.endpoint { grid-template-columns: minmax(0, 1fr); }
          .nodes { grid-template-columns: minmax(0, 1fr); }
        }
        """#

    static let javascript: String = #"""
        // swift-micro dashboard: plain ES2020, no framework, no build step, nothing loaded from elsewhere.
        //
        // Hooks for browser tests (ids and data attributes that stay put):
        //   header    a[data-nav="services" | "service" | "events"]; #live (registry stream, data-state
        //             "connecting" | "open" | "closed")
        //   services  #services (one li per name, with a[data-service="NAME"]); #services-empty;
        //             #registry-log (one li per change, newest first, data-action and data-name)
        //   service   #service-name; #service-error; #service-versions; #stats-refresh; #stats-updated;
        //             #nodes: .node[data-node="ID"] each, with .health (text SERVING, NOT_SERVING, UNKNOWN...,
        //             "…" before the first stats) and dl.stats;
        //             #endpoints: form[data-endpoint="Endpoint.Method"] each (data-calls = requests sent),
        //             with textarea.request, button.call (or button.stream and button.stop), button.reset,
        //             .answer (class ok | error | pending | streaming | stopped; stream answers are
        //             .answer .chunk, then .answer .end once the stream has ended)
        //   events    #publish-topic, #publish-body, #publish-button, #publish-result (class ok | error);
        //             #watch-topic, #watch-button, #watch-stop, #watch-clear, #watch-status (data-state
        //             "idle" | "connecting" | "open" | "closed"), #watch-messages (one .message each, newest first)
        'use strict';

        const STATS_EVERY_MS = 5000;
        const LOG_LIMIT = 100;
        const MESSAGE_LIMIT = 200;

        const state = {
          current: null,       // the service shown on the service page
          records: [],         // its registry records, one per version
          stats: new Map(),    // node id -> entry of /stats/NAME
          statsTimer: 0,
          statsBusy: false,
          watch: null,         // EventSource of the watched topic
          timers: {},          // debounced reloads
          servicesKey: '',     // what #services shows, to skip re-rendering the same list
        };

        // ---------------------------------------------------------------- small helpers

        const $ = (selector, root = document) => root.querySelector(selector);
        const enc = encodeURIComponent;
        const streamStops = new WeakMap(); // endpoint form -> how to stop its open stream

        // el('a', {href: '#/', class: 'x', text: 'hi'}, child, ...): builds DOM without innerHTML, so
        // names and values from the registry are always shown as text.
        function el(tag, attrs = {}, ...children) {
          const node = document.createElement(tag);
          for (const [key, value] of Object.entries(attrs)) {
            if (value === undefined || value === null || value === false) continue;
            if (key === 'class') node.className = value;
            else if (key === 'text') node.textContent = value;
            else node.setAttribute(key, value === true ? '' : String(value));
          }
          for (const child of children.flat(Infinity)) {
            if (child === undefined || child === null || child === false) continue;
            node.append(child instanceof Node ? child : String(child));
          }
          return node;
        }

        function clock(date = new Date()) {
          return date.toLocaleTimeString([], { hour12: false });
        }

        function debounce(key, fn, ms = 150) {
          clearTimeout(state.timers[key]);
          state.timers[key] = setTimeout(fn, ms);
        }

        function duration(value) {
          const total = Math.floor(Number(value));
          if (!Number.isFinite(total) || total < 0) return '–';
          const d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
          const m = Math.floor((total % 3600) / 60), s = total % 60;
          if (d) return `${d}d ${h}h ${m}m`;
          if (h) return `${h}h ${m}m ${s}s`;
          if (m) return `${m}m ${s}s`;
          return `${s}s`;
        }

        function byteSize(value) {
          let n = Number(value);
          if (!Number.isFinite(n)) return '–';
          const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
          let i = 0;
          while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
          return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
        }

        function count(value) {
          const n = Number(value);
          return Number.isFinite(n) ? n.toLocaleString() : '–';
        }

        function when(value) {
          let t = Number(value);
          if (!Number.isFinite(t) || t <= 0) return '';
          if (t > 1e12) t /= 1000; // milliseconds rather than seconds
          return new Date(t * 1000).toLocaleString();
        }

        // Re-indents JSON text without parsing numbers, so 64-bit integers come out exactly as sent.
        // Text that is not JSON comes back unchanged.
        function pretty(text) {
          if (typeof text !== 'string') return JSON.stringify(text, null, 2);
          try { JSON.parse(text); } catch { return text; }
          let out = '';
          let depth = 0;
          let inString = false;
          let escaped = false;
          const newline = () => '\n' + '  '.repeat(depth);
          for (let i = 0; i < text.length; i += 1) {
            const c = text[i];
            if (inString) {
              out += c;
              if (escaped) escaped = false;
              else if (c === '\\') escaped = true;
              else if (c === '"') inString = false;
            } else if (c === '"') {
              inString = true;
              out += c;
            } else if (c === '{' || c === '[') {
              let j = i + 1;
              while (j < text.length && /\s/.test(text[j])) j += 1;
              if (text[j] === (c === '{' ? '}' : ']')) { out += c + text[j]; i = j; }
              else { depth += 1; out += c + newline(); }
            } else if (c === '}' || c === ']') {
              depth -= 1;
              out += newline() + c;
            } else if (c === ',') {
              out += ',' + newline();
            } else if (c === ':') {
              out += ': ';
            } else if (!/\s/.test(c)) {
              out += c;
            }
          }
          return out;
        }

        // null when the text is JSON, else why not.
        function jsonProblem(text) {
          if (!text.trim()) return 'Invalid JSON: the request is empty (send {} for an empty message).';
          try { JSON.parse(text); return null; } catch (error) { return `Invalid JSON: ${error.message}`; }
        }

        function parseOr(text, fallback) {
          try { return JSON.parse(text); } catch { return fallback; }
        }

        // A definition list of an object's keys and values (values that are not text become JSON).
        function kvList(object, className = '') {
          const entries = Object.entries(object || {}).filter(([, v]) => v !== undefined && v !== null && v !== '');
          if (!entries.length) return null;
          return el('dl', { class: `kv ${className}`.trim() },
            entries.map(([key, value]) => [
              el('dt', { text: key }),
              el('dd', { text: typeof value === 'string' ? value : JSON.stringify(value) }),
            ]));
        }

        // ---------------------------------------------------------------- the gateway's API

        // One HTTP exchange; resolves with what came back (also for error statuses), rejects only when
        // no answer came at all.
        async function api(method, path, body) {
          const started = performance.now();
          const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
          if (body !== undefined) {
            init.headers['Content-Type'] = 'application/json';
            init.body = body;
          }
          const response = await fetch(path, init);
          const text = await response.text();
          return {
            ok: response.ok,
            status: response.status,
            statusText: response.statusText,
            text,
            json: parseOr(text, undefined),
            ms: Math.round(performance.now() - started),
          };
        }

        function isMicroError(value) {
          return value && typeof value === 'object' && !Array.isArray(value)
            && ('detail' in value || 'code' in value || 'id' in value);
        }

        // One line for a failed exchange.
        function failure(result) {
          const e = result.json;
          if (isMicroError(e) && e.detail) return `${e.detail} (HTTP ${result.status})`;
          return `HTTP ${result.status} ${result.statusText || ''}`.trim();
        }

        // A micro error ({id, code, detail, status}) as a list; anything else as its raw text.
        function errorView(json, text) {
          if (isMicroError(json)) {
            return kvList({ id: json.id, code: json.code, status: json.status, detail: json.detail }, 'micro-error')
              || el('pre', { text });
          }
          return el('pre', { class: 'raw', text: text || '(empty body)' });
        }

        function show(target, outcome, ...children) {
          target.classList.remove('ok', 'error', 'pending', 'streaming', 'stopped');
          if (outcome) target.classList.add(outcome);
          target.replaceChildren(...children.filter(Boolean));
        }

        // ---------------------------------------------------------------- routing

        function currentRoute() {
          const parts = location.hash.replace(/^#\/?/, '').split('/');
          if (parts[0] === 'service' && parts[1]) {
            let name = parts.slice(1).join('/');
            try { name = decodeURIComponent(name); } catch { /* keep it as written */ }
            return { page: 'service', name };
          }
          if (parts[0] === 'events') return { page: 'events' };
          return { page: 'services' };
        }

        function route() {
          const { page, name } = currentRoute();
          for (const section of document.querySelectorAll('[data-page]')) section.hidden = section.dataset.page !== page;
          for (const link of document.querySelectorAll('[data-nav]')) link.classList.toggle('active', link.dataset.nav === page);
          if (page === 'service') {
            openService(name);
          } else {
            clearInterval(state.statsTimer);
            state.statsTimer = 0;
          }
          if (page === 'services') loadServices();
          document.title = page === 'service' ? `${name} · swift-micro` : page === 'events' ? 'Events · swift-micro' : 'swift-micro dashboard';
          window.scrollTo(0, 0);
        }

        // ---------------------------------------------------------------- services and registry changes

        async function loadServices() {
          const status = $('#services-status');
          try {
            const result = await api('GET', '/services');
            if (!result.ok || !Array.isArray(result.json)) throw new Error(failure(result));
            status.hidden = true;
            renderServices(result.json);
          } catch (error) {
            status.textContent = `Could not list the services: ${error.message}`;
            status.hidden = false;
          }
        }

        function renderServices(entries) {
          const versions = new Map(); // name -> set of versions
          for (const entry of entries) {
            if (!entry || typeof entry.name !== 'string') continue;
            if (!versions.has(entry.name)) versions.set(entry.name, new Set());
            if (entry.version) versions.get(entry.name).add(entry.version);
          }
          const names = [...versions.keys()].sort((a, b) => a.localeCompare(b));
          const key = JSON.stringify(names.map((name) => [name, [...versions.get(name)].sort()]));
          if (key === state.servicesKey) return; // unchanged: keep the elements (and what is hovered)
          state.servicesKey = key;
          $('#services').replaceChildren(...names.map((name) => el('li', {},
            el('a', { href: `#/service/${enc(name)}`, 'data-service': name, text: name }),
            el('span', { class: 'versions' }, [...versions.get(name)].sort().map((v) => el('span', { class: 'badge', text: v }))))));
          $('#services-empty').hidden = names.length > 0;
          $('#services-count').textContent = names.length === 1 ? '1 service' : `${names.length} services`;
        }

        const VERBS = { create: 'created', update: 'updated', delete: 'deleted' };

        function logChange(change) {
          const service = (change && change.service) || {};
          const name = String(service.name || '?');
          const nodes = (service.nodes || []).map((node) => node && node.id).filter(Boolean);
          const detail = [service.version, nodes.length ? `node${nodes.length > 1 ? 's' : ''} ${nodes.join(', ')}` : '']
            .filter(Boolean).join(' · ');
          const entry = el('li', { 'data-action': change.action, 'data-name': name },
            el('time', { text: clock() }),
            el('span', { class: 'action', text: VERBS[change.action] || String(change.action) }),
            el('a', { href: `#/service/${enc(name)}`, text: name }),
            detail && el('span', { class: 'detail', text: detail }));
          const log = $('#registry-log');
          log.prepend(entry);
          while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
          $('#registry-log-empty').hidden = true;
        }

        function setLive(stateName, text) {
          const live = $('#live');
          live.dataset.state = stateName;
          live.textContent = `registry: ${text}`;
        }

        // The registry's changes, live. EventSource reconnects by itself after a dropped connection;
        // when the gateway refuses the stream it gives up, and so we try again a little later.
        function watchRegistry() {
          const source = new EventSource('/events/registry');
          source.onopen = () => {
            setLive('open', 'live');
            debounce('services', loadServices); // catch up on what changed while not connected
            if (state.current) debounce('service', loadService);
          };
          source.onmessage = (event) => {
            const change = parseOr(event.data, null);
            if (!change || typeof change !== 'object') return;
            logChange(change);
            debounce('services', loadServices);
            if (change.service && change.service.name === state.current) debounce('service', loadService);
          };
          source.onerror = () => {
            if (source.readyState === EventSource.CLOSED) {
              setLive('closed', 'offline, retrying…');
              setTimeout(watchRegistry, 5000);
            } else {
              setLive('connecting', 'reconnecting…');
            }
          };
        }

        // ---------------------------------------------------------------- one service

        function openService(name) {
          const link = $('[data-nav="service"]');
          link.hidden = false;
          link.textContent = name;
          link.href = `#/service/${enc(name)}`;
          if (name !== state.current) {
            for (const form of document.querySelectorAll('#endpoints form')) stopStream(form);
            state.current = name;
            state.records = [];
            state.stats = new Map();
            $('#service-name').textContent = name;
            $('#service-error').hidden = true;
            $('#service-versions').replaceChildren();
            $('#nodes').replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
            $('#endpoints').replaceChildren();
            $('#stats-updated').textContent = '';
          }
          loadService().then(loadStats);
          clearInterval(state.statsTimer);
          state.statsTimer = setInterval(loadStats, STATS_EVERY_MS);
        }

        async function loadService() {
          const name = state.current;
          if (!name) return;
          const problem = $('#service-error');
          let result;
          try {
            result = await api('GET', `/services/${enc(name)}`);
          } catch (error) {
            result = { ok: false, status: 0, statusText: error.message, text: '' };
          }
          if (name !== state.current) return; // another service was opened meanwhile
          if (result.ok && Array.isArray(result.json)) {
            problem.hidden = true;
            state.records = result.json.filter((record) => record && typeof record === 'object');
          } else {
            problem.textContent = result.status === 404
              ? `${name} is not registered: ${failure(result)}`
              : `Could not read ${name} from the registry: ${failure(result)}`;
            problem.hidden = false;
            state.records = [];
          }
          renderVersions();
          renderNodes();
          renderEndpoints();
        }

        function renderVersions() {
          $('#service-versions').replaceChildren(...state.records.map((record) => el('div', { class: 'version' },
            el('span', { class: 'badge', text: record.version || 'no version' }),
            kvList(record.metadata) || el('div', { class: 'muted small', text: 'no metadata' }))));
        }

        function renderNodes() {
          const nodes = [];
          for (const record of state.records) {
            for (const node of record.nodes || []) if (node && node.id) nodes.push({ ...node, version: record.version });
          }
          if (!nodes.length) {
            $('#nodes').replaceChildren(el('p', { class: 'muted', text: 'No nodes are registered.' }));
            return;
          }
          $('#nodes').replaceChildren(...nodes.map((node) => {
            const card = el('article', { class: 'node', 'data-node': node.id },
              el('div', { class: 'node-head' },
                el('span', { class: 'health', title: 'health', text: '…' }),
                el('code', { class: 'node-id', text: node.id }),
                el('span', { class: 'address', text: node.address || '' }),
                node.version && el('span', { class: 'badge', text: node.version })),
              el('dl', { class: 'stats' }),
              el('p', { class: 'node-error', hidden: true }),
              node.metadata && Object.keys(node.metadata).length
                && el('details', {}, el('summary', { text: 'metadata' }), kvList(node.metadata)));
            applyStats(card, state.stats.get(node.id));
            return card;
          }));
        }

        function applyStats(card, entry) {
          const health = $('.health', card);
          const problem = $('.node-error', card);
          if (!entry) {
            health.textContent = '…';
            health.className = 'health';
            return;
          }
          const status = entry.health ? String(entry.health) : 'UNKNOWN';
          health.textContent = status;
          // Debug.Health answers "ok" (go-micro's word); gRPC's health says SERVING
          const serving = status === 'SERVING' || status.toLowerCase() === 'ok';
          health.className = `health ${serving ? 'serving' : status === 'UNKNOWN' ? 'unknown' : 'not-serving'}`;
          const stats = entry.stats;
          const items = stats ? [
            ['uptime', duration(stats.uptime), when(stats.started) && `started ${when(stats.started)}`],
            ['memory', byteSize(stats.memory)],
            ['threads', count(stats.threads)],
            ['requests', count(stats.requests)],
            ['errors', count(stats.errors)],
          ] : [];
          $('.stats', card).replaceChildren(...items.map(([label, value, title]) =>
            el('div', { title }, el('dt', { text: label }), el('dd', { 'data-stat': label, text: value }))));
          problem.textContent = entry.error || '';
          problem.hidden = !entry.error;
        }

        async function loadStats() {
          const name = state.current;
          if (!name || state.statsBusy || $('#page-service').hidden) return;
          state.statsBusy = true;
          const button = $('#stats-refresh');
          const note = $('#stats-updated');
          button.disabled = true;
          try {
            const result = await api('GET', `/stats/${enc(name)}`);
            if (name !== state.current) return;
            if (!result.ok || !Array.isArray(result.json)) throw new Error(failure(result));
            state.stats = new Map(result.json.filter((entry) => entry && entry.id).map((entry) => [entry.id, entry]));
            for (const card of document.querySelectorAll('#nodes [data-node]')) applyStats(card, state.stats.get(card.dataset.node));
            note.textContent = `stats at ${clock()}`;
          } catch (error) {
            note.textContent = `stats unavailable: ${error.message}`;
          } finally {
            state.statsBusy = false;
            button.disabled = false;
          }
        }

        // ---------------------------------------------------------------- endpoints

        // go-micro marks streams with metadata stream = "true"; other non-false words count too.
        function isStream(metadata) {
          const value = metadata && metadata.stream;
          if (value === undefined || value === null) return false;
          return !['', 'false', '0', 'no', 'none', 'unary'].includes(String(value).trim().toLowerCase());
        }

        // A zero value for a field of the given type (go-micro's type names, and Swift's).
        function zeroValue(field, depth) {
          let type = String(field.type || '').trim();
          if (type.startsWith('*')) type = type.slice(1);
          if (type.endsWith('?')) type = type.slice(0, -1);
          const t = type.toLowerCase();
          if (t === '[]byte' || t === '[]uint8' || t === 'bytes' || t === 'data') return '';
          if (t.startsWith('map[') || t.startsWith('dictionary<') || /^\[[^\]]+:.+\]$/.test(t)) return {};
          if (t.startsWith('[]') || t.startsWith('array<') || /^\[.+\]$/.test(t)) return [];
          if (Array.isArray(field.values) && field.values.length) return skeleton(field, depth + 1);
          if (t === 'string') return '';
          if (t === 'bool' || t === 'boolean') return false;
          if (/^(u?int(8|16|32|64)?|s?int(32|64)|s?fixed(32|64)|float(32|64)?|double|number|integer)$/.test(t)) return 0;
          return {};
        }

        // The request skeleton: every field listed in the shape with a zero value; {} if none are known.
        function skeleton(value, depth = 0) {
          const out = {};
          if (!value || depth > 10 || !Array.isArray(value.values)) return out;
          for (const field of value.values) {
            if (field && field.name) out[field.name] = zeroValue(field, depth);
          }
          return out;
        }

        function fieldList(values, depth) {
          return el('ul', { class: 'fields' }, values.filter(Boolean).map((field) => el('li', {},
            el('span', { class: 'field', text: field.name }), ': ', el('span', { class: 'type', text: field.type || '?' }),
            Array.isArray(field.values) && field.values.length && depth < 10 && fieldList(field.values, depth + 1))));
        }

        function shapeView(label, value) {
          if (!value) {
            return el('div', { class: 'shape' }, el('h4', {}, `${label} `, el('span', { class: 'muted', text: 'not described' })));
          }
          const fields = Array.isArray(value.values) ? value.values : [];
          return el('div', { class: 'shape' },
            el('h4', {}, `${label} `, el('code', { text: value.type || value.name || '?' })),
            fields.length ? fieldList(fields, 0) : el('div', { class: 'muted small', text: 'no fields listed' }));
        }

        function renderEndpoints() {
          const box = $('#endpoints');
          const endpoints = new Map();
          for (const record of state.records) {
            for (const endpoint of record.endpoints || []) {
              if (endpoint && endpoint.name && !endpoints.has(endpoint.name)) endpoints.set(endpoint.name, endpoint);
            }
          }
          // forms already on the page stay as they are, so what was typed and answered is kept
          // the service's own endpoints first, then those every service has (Debug.*, gRPC's
          // health and reflection)
          const framework = (name) => name.startsWith('Debug.') || name.startsWith('grpc.') ? 1 : 0;
          const fresh = [...endpoints.values()]
            .filter((endpoint) => !$(`form[data-endpoint="${CSS.escape(endpoint.name)}"]`, box))
            .sort((a, b) => framework(a.name) - framework(b.name) || a.name.localeCompare(b.name));
          if (fresh.length) $(':scope > p.muted', box)?.remove();
          box.append(...fresh.map(endpointForm));
          if (!box.children.length) box.append(el('p', { class: 'muted', text: 'No endpoints are registered.' }));
        }

        function endpointForm(endpoint) {
          const streaming = isStream(endpoint.metadata);
          const text = JSON.stringify(skeleton(endpoint.request), null, 2);
          const textarea = el('textarea', {
            class: 'request',
            rows: Math.min(14, Math.max(3, text.split('\n').length + 1)),
            spellcheck: 'false',
            'aria-label': `request to ${endpoint.name}`,
          });
          textarea.value = text;
          const otherMetadata = { ...(endpoint.metadata || {}) };
          delete otherMetadata.stream;
          const kind = otherMetadata.stream_kind;
          delete otherMetadata.stream_kind;
          const buttons = streaming
            ? [el('button', { type: 'submit', class: 'stream', text: 'Stream' }), el('button', { type: 'button', class: 'stop', disabled: true, text: 'Stop' })]
            : [el('button', { type: 'submit', class: 'call', text: 'Call' })];
          const form = el('form', { class: 'endpoint', 'data-endpoint': endpoint.name, 'data-calls': 0, autocomplete: 'off' },
            el('h3', {},
              el('span', { class: 'endpoint-name', text: endpoint.name }),
              streaming && el('span', { class: 'badge stream', text: kind ? `${kind} stream` : 'stream' })),
            el('div', { class: 'shapes' },
              shapeView('Request', endpoint.request),
              shapeView('Response', endpoint.response),
              kvList(otherMetadata)),
            el('div', { class: 'editor' },
              textarea,
              el('div', { class: 'actions' },
                buttons,
                el('button', { type: 'button', class: 'reset', text: 'Reset' }),
                el('span', { class: 'hint', text: 'Ctrl+Enter sends' })),
              el('div', { class: 'answer', 'aria-live': 'polite' })));
          form.addEventListener('submit', (event) => {
            event.preventDefault();
            if (streaming) startStream(form); else callEndpoint(form);
          });
          textarea.addEventListener('keydown', (event) => {
            if ((event.ctrlKey || event.metaKey) && event.key === 'Enter') { event.preventDefault(); form.requestSubmit(); }
          });
          $('button.reset', form).addEventListener('click', () => { textarea.value = text; });
          if (streaming) $('button.stop', form).addEventListener('click', () => stopStream(form));
          return form;
        }

        function countCall(form) {
          form.dataset.calls = String(Number(form.dataset.calls || 0) + 1);
        }

        async function callEndpoint(form) {
          const body = $('textarea.request', form).value;
          const answer = $('.answer', form);
          const button = $('button.call', form);
          const problem = jsonProblem(body);
          if (problem) {
            show(answer, 'error', el('div', { class: 'meta', text: 'not sent' }), el('p', { text: problem }));
            return;
          }
          button.disabled = true;
          show(answer, 'pending', el('div', { class: 'meta', text: 'calling…' }));
          countCall(form);
          const started = performance.now();
          try {
            const result = await api('POST', `/api/${enc(state.current)}/${enc(form.dataset.endpoint)}`, body);
            const meta = el('div', { class: 'meta', text: `HTTP ${result.status} ${result.statusText} · ${result.ms} ms` });
            if (result.ok) show(answer, 'ok', meta, el('pre', { class: 'json', text: pretty(result.text) }));
            else show(answer, 'error', meta, errorView(result.json, result.text));
          } catch (error) {
            const ms = Math.round(performance.now() - started);
            show(answer, 'error', el('div', { class: 'meta', text: `no answer · ${ms} ms` }),
              el('p', { text: `The request failed: ${error.message}` }));
          } finally {
            button.disabled = false;
          }
        }

        // A server stream over Server-Sent Events: each answer a message event, then "end", or an
        // "error" event carrying a micro error. EventSource's own "error" (no data) means the
        // connection failed; it is closed then rather than left to reconnect, which would call again.
        function startStream(form) {
          stopStream(form);
          const body = $('textarea.request', form).value;
          const answer = $('.answer', form);
          const problem = jsonProblem(body);
          if (problem) {
            show(answer, 'error', el('div', { class: 'meta', text: 'not sent' }), el('p', { text: problem }));
            return;
          }
          const streamButton = $('button.stream', form);
          const stopButton = $('button.stop', form);
          const meta = el('div', { class: 'meta', text: 'opening the stream…' });
          const list = el('ol', { class: 'chunks' });
          show(answer, 'streaming', meta, list);
          countCall(form);
          const started = performance.now();
          const source = new EventSource(`/api/${enc(state.current)}/${enc(form.dataset.endpoint)}?request=${enc(body)}`);
          let answers = 0;
          let opened = false;
          const summary = (what) => `${what} · ${answers} answer${answers === 1 ? '' : 's'} · ${Math.round(performance.now() - started)} ms`;
          const finish = (outcome, what, node) => {
            source.close();
            streamStops.delete(form);
            streamButton.disabled = false;
            stopButton.disabled = true;
            answer.classList.remove('streaming');
            answer.classList.add(outcome);
            meta.textContent = summary(what);
            if (node) answer.append(node);
          };
          streamStops.set(form, () => finish('stopped', 'stopped', null));
          streamButton.disabled = true;
          stopButton.disabled = false;
          source.onopen = () => { opened = true; meta.textContent = summary('streaming'); };
          source.onmessage = (event) => {
            answers += 1;
            list.append(el('li', { class: 'chunk' }, el('time', { text: clock() }), el('pre', { class: 'json', text: pretty(event.data) })));
            list.scrollTop = list.scrollHeight;
            meta.textContent = summary('streaming');
          };
          source.addEventListener('end', () => finish('ok', 'ended', el('div', { class: 'end', text: 'end of stream' })));
          source.addEventListener('error', (event) => {
            if (typeof event.data === 'string') {
              finish('error', 'failed', errorView(parseOr(event.data, undefined), event.data));
            } else {
              finish('error', opened ? 'connection lost' : 'not opened', el('p', {
                text: opened ? 'The connection closed before the end of the stream.'
                  : 'The stream could not be opened (the gateway refused it or could not be reached).',
              }));
            }
          });
        }

        function stopStream(form) {
          const stop = streamStops.get(form);
          if (stop) stop();
        }

        // ---------------------------------------------------------------- events: publish and watch

        async function publish(event) {
          event.preventDefault();
          const topic = $('#publish-topic').value.trim();
          const body = $('#publish-body').value;
          const result = $('#publish-result');
          const button = $('#publish-button');
          const problem = !topic ? 'Enter a topic to publish to.' : jsonProblem(body);
          if (problem) {
            show(result, 'error', el('div', { class: 'meta', text: 'not sent' }), el('p', { text: problem }));
            return;
          }
          button.disabled = true;
          show(result, 'pending', el('div', { class: 'meta', text: 'publishing…' }));
          try {
            const answer = await api('POST', `/publish/${enc(topic)}`, body);
            const meta = el('div', { class: 'meta', text: `HTTP ${answer.status} ${answer.statusText} · ${answer.ms} ms` });
            if (answer.ok) show(result, 'ok', meta, el('p', { text: `Published to ${topic} at ${clock()}.` }));
            else show(result, 'error', meta, errorView(answer.json, answer.text));
          } catch (error) {
            show(result, 'error', el('p', { text: `The request failed: ${error.message}` }));
          } finally {
            button.disabled = false;
          }
        }

        function setWatch(stateName, text) {
          const status = $('#watch-status');
          status.dataset.state = stateName;
          status.textContent = text;
          const active = stateName === 'connecting' || stateName === 'open';
          $('#watch-button').disabled = active;
          $('#watch-stop').disabled = !active;
          $('#watch-topic').disabled = active;
        }

        function startWatch(event) {
          event.preventDefault();
          const topic = $('#watch-topic').value.trim();
          if (!topic) { setWatch('idle', 'enter a topic to watch'); return; }
          stopWatch();
          const source = new EventSource(`/events/topic/${enc(topic)}`);
          state.watch = source;
          setWatch('connecting', `connecting to ${topic}…`);
          source.onopen = () => setWatch('open', `watching ${topic}`);
          source.onmessage = (message) => addMessage(topic, message.data);
          source.onerror = (error) => {
            if (typeof error.data === 'string') {
              const e = parseOr(error.data, {});
              stopWatch(`cannot watch ${topic}: ${e.detail || error.data}`);
            } else if (source.readyState === EventSource.CLOSED) {
              stopWatch(`cannot watch ${topic}: the gateway refused or could not be reached`);
            } else {
              setWatch('connecting', `reconnecting to ${topic}…`);
            }
          };
        }

        function stopWatch(why) {
          if (state.watch) state.watch.close();
          const wasWatching = state.watch !== null;
          state.watch = null;
          if (why) setWatch('closed', why);
          else if (wasWatching) setWatch('idle', 'stopped');
        }

        function addMessage(topic, data) {
          const message = parseOr(data, null) || { body: data };
          const base64 = message.encoding === 'base64';
          const body = typeof message.body === 'string' ? message.body : JSON.stringify(message.body);
          const list = $('#watch-messages');
          const item = el('li', { class: 'message' },
            el('div', { class: 'message-head' },
              el('time', { text: clock() }),
              el('code', { text: message.topic || topic }),
              base64 && el('span', { class: 'badge', text: 'base64' })),
            kvList(message.header || message.headers, 'headers'),
            el('pre', { class: 'json body', text: base64 ? body : pretty(body ?? '') }));
          list.prepend(item);
          while (list.children.length > MESSAGE_LIMIT) list.lastElementChild.remove();
        }

        // ---------------------------------------------------------------- start

        function start() {
          $('#footer-origin').textContent = location.host;
          $('#registry-log-clear').addEventListener('click', () => {
            $('#registry-log').replaceChildren();
            $('#registry-log-empty').hidden = false;
          });
          $('#stats-refresh').addEventListener('click', loadStats);
          $('#publish-form').addEventListener('submit', publish);
          $('#watch-form').addEventListener('submit', startWatch);
          $('#watch-stop').addEventListener('click', () => stopWatch());
          $('#watch-clear').addEventListener('click', () => $('#watch-messages').replaceChildren());
          window.addEventListener('hashchange', route);
          route();
          watchRegistry();
        }

        start();
        """#
}
