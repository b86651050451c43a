/*! tippen in-app tracker — tells your team when a logged-in user needs help.
 *
 * Embed in the authenticated part of your app (after login):
 *   <script src="https://YOUR-TIPPEN-HOST/tippen-app-tracker.js"
 *           data-tippen-api-key="YOUR_SITE_KEY"
 *           data-tippen-user-id="user_123"
 *           data-tippen-user-email="john@acme.com"
 *           data-tippen-subscription-tier="free_trial"
 *           data-tippen-user-hash="HMAC_FROM_YOUR_BACKEND"
 *           async></script>
 *
 * `data-tippen-subscription-tier` is free_trial | paid | enterprise. Without a user id the
 * tracker collects events and sends them once tippen.identify() names the user.
 *
 * Verified identities: when the site has an identity secret, your backend renders
 * `data-tippen-user-hash` = hex HMAC-SHA256(identity secret, user id) for the logged-in user
 * (never put the secret in the page); tippen refuses batches whose hash does not match, so the
 * public key alone cannot post activity for your users.
 *
 * Optional attributes:
 *   data-tippen-endpoint="https://host"  API base URL (default: this script's URL without its
 *                                        file name, e.g. https://host/tippen)
 *   data-tippen-flush-ms="5000"          send a batch at least this often (default 5 s)
 *   data-tippen-page-time-ms="60000"     while the tab is visible, report time on the current
 *                                        page this often (default 60 s; tells tippen the user
 *                                        is still there, for the "stuck on a page" rule)
 *   data-tippen-debug                    log what the tracker does with console.debug
 *
 * Captured: route changes (history.pushState / replaceState, popstate, hashchange), clicks,
 * form submissions, time on page, uncaught errors and unhandled promise rejections, and custom
 * events. Events go to POST /api/track/user-activity in batches of at most 50, every 5 s; on
 * pagehide the rest leaves with navigator.sendBeacon.
 *
 * With the visitor tracker on the same page (load it first), each batch carries its visitor id
 * (`visitorId`): the dashboard's user view then knows the user is a live visitor and offers an
 * invite to a call.
 *
 * API: window.tippen.track(name, data), tippen.identify(userId, email, tier, userHash),
 * tippen.flush()
 * (a Promise). Plain ES2017, no build step, no dependencies; never throws into the page.
 */
(function () {
  'use strict';

  var MAX_BATCH = 50;
  var MAX_QUEUE = 500;
  var MAX_TEXT = 500;
  var MAX_DATA_JSON = 4096;
  var MAX_BACKOFF_MS = 5 * 60 * 1000;

  try {
    if (typeof window === 'undefined' || typeof document === 'undefined') return;
    if (window.tippen && window.tippen.__tippenApp) return; // included twice

    var script = document.currentScript;
    if (!script || !script.hasAttribute || !script.hasAttribute('data-tippen-api-key')) {
      script = document.querySelector('script[data-tippen-user-id],script[src*="tippen-app-tracker"]');
    }
    if (!script) return;
    var attr = function (name) { return (script.getAttribute(name) || '').trim(); };

    var debugOn = script.hasAttribute('data-tippen-debug');
    var log = function () {
      if (!debugOn) return;
      try {
        var args = Array.prototype.slice.call(arguments);
        args.unshift('[tippen-app]');
        console.debug.apply(console, args);
      } catch (e) { /* no console */ }
    };

    var apiKey = attr('data-tippen-api-key');
    if (!apiKey) { log('no data-tippen-api-key: not tracking'); return; }
    var endpoint = attr('data-tippen-endpoint');
    if (!endpoint) {
      // This script's URL without its file name: the origin, and the path tippen is mounted under.
      try { endpoint = new URL('.', script.src).href; } catch (e) { endpoint = ''; }
    }
    endpoint = endpoint.replace(/\/+$/, '');
    var url = endpoint + '/api/track/user-activity';
    var number = function (name, dflt, min) {
      var v = parseInt(attr(name), 10);
      return isFinite(v) && v >= min ? v : dflt;
    };
    var flushMs = number('data-tippen-flush-ms', 5000, 100);
    var pageTimeMs = number('data-tippen-page-time-ms', 60000, 1000);

    var TIERS = { free_trial: 1, paid: 1, enterprise: 1 };
    var user = { id: '', email: '', tier: '', hash: '' };
    var setUser = function (id, email, tier, hash) {
      if (id != null && String(id) && String(id).slice(0, 128) !== user.id) {
        user.id = String(id).slice(0, 128);
        user.hash = ''; // a hash signs one user id
      }
      if (hash != null) user.hash = String(hash).slice(0, 128);
      if (email != null) user.email = String(email).slice(0, 254);
      if (tier != null) {
        tier = String(tier);
        if (TIERS[tier]) user.tier = tier; else log('unknown tier ignored:', tier);
      }
    };
    setUser(attr('data-tippen-user-id'), attr('data-tippen-user-email') || null,
      attr('data-tippen-subscription-tier') || null, attr('data-tippen-user-hash') || null);

    var text = function (s) { return s == null ? undefined : String(s).slice(0, MAX_TEXT); };
    var now = function () { return Date.now(); };

    // ---- the queue -----------------------------------------------------------------------
    var queue = [];
    var sending = false;
    var backoffMs = 0;
    var retryAt = 0;
    var push = function (event) {
      event.timestamp = now();
      queue.push(event);
      if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
      if (queue.length >= MAX_BATCH) flush();
    };

    var body = function (events) {
      var b = { apiKey: apiKey, userId: user.id, events: events };
      if (user.email) b.userEmail = user.email;
      if (user.tier) b.subscriptionTier = user.tier;
      if (user.hash) b.userHash = user.hash;
      // The visitor tracker on the same page: its visitor id links this user to the live list
      // (the dashboard's user view can then invite them to a call).
      try {
        var vid = window.tippen && window.tippen.visitorId;
        if (typeof vid === 'string' && vid) b.visitorId = vid.slice(0, 128);
      } catch (e) { /* no visitor tracker */ }
      return JSON.stringify(b);
    };

    // Sends one batch with fetch; resolves when done (failures requeue the batch).
    function flush() {
      if (sending || !user.id || !queue.length || now() < retryAt) return Promise.resolve();
      var batch = queue.splice(0, MAX_BATCH);
      sending = true;
      var done = function (requeue, why) {
        sending = false;
        if (requeue) {
          queue = batch.concat(queue).slice(0, MAX_QUEUE);
          backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs ? backoffMs * 2 : flushMs);
          retryAt = now() + backoffMs;
          log('send failed, retrying in', backoffMs, 'ms:', why);
        } else {
          backoffMs = 0;
          retryAt = 0;
          if (queue.length >= MAX_BATCH) flush();
        }
      };
      try {
        return fetch(url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: body(batch),
          keepalive: true,
          credentials: 'omit',
          mode: 'cors'
        }).then(function (r) {
          if (r.ok) { log('sent', batch.length, 'events'); done(false); return; }
          // 429 and 5xx may pass later; anything else never will (drop, say why).
          var retry = r.status === 429 || r.status >= 500;
          if (!retry) {
            r.text().then(function (t) { log('batch refused:', r.status, t); }, function () {});
          }
          done(retry, 'HTTP ' + r.status);
        }, function (e) { done(true, e && e.message); });
      } catch (e) {
        done(true, e && e.message);
        return Promise.resolve();
      }
    }

    // The last chance on pagehide: everything left, by sendBeacon (no headers: the key is in
    // the body), in batches of at most 50.
    var beaconAll = function () {
      if (!user.id) return;
      while (queue.length) {
        var batch = queue.splice(0, MAX_BATCH);
        var sent = false;
        try {
          sent = typeof navigator.sendBeacon === 'function' && navigator.sendBeacon(url, body(batch));
        } catch (e) { sent = false; }
        if (!sent) {
          try {
            fetch(url, { method: 'POST', body: body(batch), keepalive: true, credentials: 'omit', mode: 'cors' })
              .catch(function () {});
          } catch (e) { /* page is going away */ }
        }
      }
    };

    // ---- routes and time on page -----------------------------------------------------------
    var routeOf = function () {
      var h = location.hash || '';
      return (location.pathname || '/') + (h.indexOf('#/') === 0 || h.indexOf('#!/') === 0 ? h : '');
    };
    var route = routeOf();
    var routeSince = now();
    var pageTime = function () {
      push({ type: 'page_time', route: text(route), duration: Math.max(0, now() - routeSince) });
    };
    var routeChanged = function () {
      var next = routeOf();
      if (next === route) return;
      pageTime();
      route = next;
      routeSince = now();
      push({ type: 'route', route: text(route) });
    };
    ['pushState', 'replaceState'].forEach(function (name) {
      var original = history[name];
      if (typeof original !== 'function') return;
      history[name] = function () {
        var result = original.apply(this, arguments);
        try { routeChanged(); } catch (e) { /* never break navigation */ }
        return result;
      };
    });
    window.addEventListener('popstate', routeChanged);
    window.addEventListener('hashchange', routeChanged);

    // ---- clicks and forms ----------------------------------------------------------------
    var describe = function (el) {
      if (!el || !el.tagName) return undefined;
      var d = el.tagName.toLowerCase();
      if (el.id) d += '#' + el.id;
      var cls = typeof el.className === 'string' ? el.className.trim().split(/\s+/).slice(0, 2) : [];
      if (cls.length && cls[0]) d += '.' + cls.join('.');
      var label = el.getAttribute && (el.getAttribute('data-tippen-label') || el.getAttribute('aria-label'));
      if (label) d += '[' + label + ']';
      return text(d);
    };
    document.addEventListener('click', function (e) {
      try {
        var t = e.target;
        var el = t && t.closest ? t.closest('a,button,input,select,textarea,label,[role=button],[data-tippen-label]') : null;
        push({ type: 'click', element: describe(el || t), route: text(route) });
      } catch (err) { /* ignore */ }
    }, true);
    document.addEventListener('submit', function (e) {
      try {
        var f = e.target;
        var id = f && (f.id || f.getAttribute('name') || f.getAttribute('action'));
        push({ type: 'form_submit', formId: text(id || 'form'), route: text(route) });
      } catch (err) { /* ignore */ }
    }, true);

    // ---- errors --------------------------------------------------------------------------
    window.addEventListener('error', function (e) {
      try {
        if (!e || !(e.message || e.error)) return; // a failed resource load, not a script error
        var msg = e.message || (e.error && e.error.message) || 'Script error';
        push({ type: 'error', message: text(msg), route: text(route) });
      } catch (err) { /* ignore */ }
    });
    window.addEventListener('unhandledrejection', function (e) {
      try {
        var r = e && e.reason;
        var msg = r && r.message ? r.message : String(r);
        push({ type: 'error', message: text('Unhandled rejection: ' + msg), route: text(route) });
      } catch (err) { /* ignore */ }
    });

    // ---- timers and page lifecycle -----------------------------------------------------------
    var visible = function () { return document.visibilityState !== 'hidden'; };
    setInterval(function () { flush(); }, flushMs);
    setInterval(function () { if (visible()) pageTime(); }, pageTimeMs);
    window.addEventListener('pagehide', function () {
      try { pageTime(); beaconAll(); } catch (e) { /* ignore */ }
    });
    document.addEventListener('visibilitychange', function () {
      if (!visible()) { try { flush(); } catch (e) { /* ignore */ } }
    });

    // ---- the developer API ---------------------------------------------------------------
    var api = window.tippen || {};
    api.__tippenApp = true;
    api.track = function (name, data) {
      try {
        var ev = { type: 'custom', name: text(name || 'custom') };
        if (data !== undefined) {
          var json = JSON.stringify(data);
          ev.data = json && json.length <= MAX_DATA_JSON ? JSON.parse(json) : { truncated: true };
        }
        push(ev);
      } catch (e) { log('track failed:', e && e.message); }
    };
    api.identify = function (userId, email, tier, userHash) {
      try { setUser(userId, email, tier, userHash); return flush(); } catch (e) { return Promise.resolve(); }
    };
    // On a page that also runs the visitor tracker (load it first), flush() flushes both.
    var visitorFlush = typeof api.flush === 'function' ? api.flush : null;
    api.flush = function () {
      try {
        retryAt = 0;
        var mine = flush();
        if (visitorFlush) { try { visitorFlush(); } catch (e) { /* ignore */ } }
        return mine;
      } catch (e) { return Promise.resolve(); }
    };
    window.tippen = api;

    push({ type: 'route', route: text(route) });
    log('tracking user', user.id || '(not identified yet)', 'to', url);
  } catch (e) {
    /* never break the host page */
  }
})();
