/*! tippen tracker — shows a site's live visitors on its tippen dashboard.
 *
 * Embed:
 *   <script src="https://YOUR-TIPPEN-HOST/tippen-tracker.js"
 *           data-tippen-api-key="YOUR_SITE_KEY" async></script>
 *
 * Optional attributes:
 *   data-tippen-endpoint="https://host"  API base URL (default: this script's URL without its
 *                                        file name, e.g. https://host/tippen)
 *   data-tippen-backend="https://host"   the same (the predecessor's name; data-tippen-endpoint wins)
 *   data-tippen-ws-endpoint="wss://host/path?query"  where the visitor socket is (default: what
 *                                        the server that served this script says, else
 *                                        /ws/visitor under the API base URL); apiKey and
 *                                        visitorId are appended to its query
 *   data-tippen-heartbeat-ms="30000"     heartbeat interval in milliseconds
 *   data-tippen-debug                    log what the tracker does with console.debug
 *   data-tippen-strip-params="a,b"       more query parameters never to send (always removed:
 *                                        token, code, access_token, id_token, password,
 *                                        secret, key, session; and the #fragment)
 *
 * Video invites: each tab keeps a WebSocket open to /ws/visitor, on which the server pushes an
 * invite the moment it is sent (VIDEO_INVITE) and its later states (VIDEO_INVITE_UPDATE). A
 * pending invite also rides on the /track/visitor response (the fallback when the socket is
 * down). The tracker shows it once (#tippen-invite, Join / Decline, a countdown), answers on the
 * socket when it is open (else through POST /track/invite) and opens the guest URL in a
 * full-screen frame (#tippen-call) on Join.
 *
 * Privacy: URLs and referrers are sent without their fragment and sensitive query parameters.
 * tippen.optOut() stops tracking this browser for good (stored in localStorage; the visitor
 * leaves dashboards at once); a 410 from the server (the visitor was deleted) does the same.
 *
 * The predecessor's host pages listened for a window message on invite: the tracker posts
 * { type: 'TIPPEN_VIDEO_INVITE', inviteId, guestUrl, invitedBy, expiresIn } to its own window
 * when it shows one.
 *
 * API: window.tippen = { visitorId, tabId, flush(), optOut(), optedOut }, also as
 * window.TippenTracker (the predecessor's name).
 * Plain ES2017, no dependencies. The tracker never throws into the host page.
 */
(function () {
  'use strict';

  var VISITOR_KEY = 'tippen_visitor_id';
  var OPT_OUT_KEY = 'tippen_opt_out';
  var STRIP_PARAMS = ['token', 'code', 'access_token', 'id_token', 'password', 'secret', 'key', 'session'];
  var TAB_KEY = 'tippen_tab_id';
  var DEFAULT_HEARTBEAT_MS = 30000;
  var MIN_HEARTBEAT_MS = 250;
  var MAX_BACKOFF_MS = 5 * 60 * 1000;
  var VERSION = '0.1.0';
  var PRIORITY = { heartbeat: 1, visibility: 2, pageview: 3 };
  // Where the visitor socket is, filled in by the server that serves this script when it is not
  // beside the API (AWS Lambda's WebSocket API has its own address).
  var SERVED_VISITOR_WS_URL = '';

  try {
    if (typeof window === 'undefined' || typeof document === 'undefined') return;
    if (window.tippen && window.tippen.__tippen) return; // included twice: the first copy runs

    // ---- configuration from our own <script> tag --------------------------------------
    var script = document.currentScript;
    if (!script || !script.hasAttribute || !script.hasAttribute('data-tippen-api-key')) {
      script = document.querySelector('script[data-tippen-api-key]');
    }
    if (!script) return;

    var debugOn = script.hasAttribute('data-tippen-debug');
    var log = function () {
      if (!debugOn) return;
      try {
        var args = Array.prototype.slice.call(arguments);
        args.unshift('[tippen]');
        console.debug.apply(console, args);
      } catch (e) { /* no console */ }
    };

    var apiKey = (script.getAttribute('data-tippen-api-key') || '').trim();
    if (!apiKey) {
      log('no data-tippen-api-key: not tracking');
      return;
    }

    var endpoint = (script.getAttribute('data-tippen-endpoint') || '').trim() ||
      (script.getAttribute('data-tippen-backend') || '').trim();
    if (!endpoint) {
      try {
        // This script's URL without its file name: the server's origin, with the path tippen
        // is mounted under if any (https://app.example/tippen/tippen-tracker.js).
        endpoint = new URL('.', script.src).href;
      } catch (e) {
        endpoint = '';
      }
      if (!/^https?:/i.test(endpoint)) endpoint = location.origin;
    }
    endpoint = endpoint.replace(/\/+$/, '');

    // Never send fragments (#access_token=…) or sensitive query parameters.
    var stripParams = STRIP_PARAMS.concat(
      (script.getAttribute('data-tippen-strip-params') || '').split(',')
        .map(function (p) { return p.trim().toLowerCase(); })
        .filter(function (p) { return p; }));
    var cleanUrl = function (href) {
      if (!href) return href;
      try {
        var u = new URL(href, location.href);
        u.hash = '';
        var drop = [];
        u.searchParams.forEach(function (v, name) {
          if (stripParams.indexOf(name.toLowerCase()) >= 0) drop.push(name);
        });
        drop.forEach(function (name) { u.searchParams.delete(name); });
        return u.href;
      } catch (e) {
        return String(href).split('#')[0].split('?')[0];
      }
    };

    var heartbeatMs = parseInt(script.getAttribute('data-tippen-heartbeat-ms') || '', 10);
    if (!(heartbeatMs >= MIN_HEARTBEAT_MS)) heartbeatMs = DEFAULT_HEARTBEAT_MS;

    // ---- identifiers -------------------------------------------------------------------
    var random9 = function () {
      var alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
      var out = '';
      var bytes = null;
      try {
        bytes = new Uint8Array(9);
        window.crypto.getRandomValues(bytes);
      } catch (e) {
        bytes = null;
      }
      for (var i = 0; i < 9; i++) {
        var n = bytes ? bytes[i] : Math.floor(Math.random() * 256);
        out += alphabet.charAt(n % 36);
      }
      return out;
    };
    var storageGet = function (kind, key) {
      try {
        return window[kind].getItem(key);
      } catch (e) {
        return null;
      }
    };
    var storageSet = function (kind, key, value) {
      try {
        window[kind].setItem(key, value);
      } catch (e) { /* private mode, disabled storage, quota: keep it in memory */ }
    };
    var validId = function (value, prefix) {
      return typeof value === 'string' && value.indexOf(prefix) === 0 && value.length <= 128;
    };

    var visitorId = storageGet('localStorage', VISITOR_KEY);
    if (!validId(visitorId, 'visitor_')) {
      visitorId = 'visitor_' + Date.now() + '_' + random9();
      storageSet('localStorage', VISITOR_KEY, visitorId);
    }
    var newTabId = function () {
      var id = 'tab_' + Date.now() + '_' + random9();
      storageSet('sessionStorage', TAB_KEY, id);
      return id;
    };
    var tabId = storageGet('sessionStorage', TAB_KEY);
    if (!validId(tabId, 'tab_')) tabId = newTabId();
    // This page (document): a reload's beacon may reach the server after the next page's first
    // event, and the server ignores a beacon for a page the tab has already left.
    var newPageId = function () {
      return 'page_' + Date.now() + '_' + random9();
    };
    var pageId = newPageId();

    // ---- state -------------------------------------------------------------------------
    var lastUrl = location.href;
    var failures = 0; // consecutive failed sends
    var backoffUntil = 0; // no sends before this time (ms), except flush()
    var pending = null; // event held back during backoff, sent by the retry
    var timer = null;
    var stopped = false; // after pagehide, until pageshow
    var disabled = false; // the server refused our key: nothing more to send

    var visibility = function () {
      return document.visibilityState === 'hidden' ? 'hidden' : 'visible';
    };

    var schedule = function (delay) {
      if (timer) clearTimeout(timer);
      timer = null;
      if (stopped) return;
      timer = setTimeout(onTimer, delay);
    };

    var backoffDelay = function (retryAfterMs) {
      var exp = Math.min(MAX_BACKOFF_MS, heartbeatMs * Math.pow(2, Math.min(failures, 20)));
      var jittered = exp / 2 + Math.random() * (exp / 2); // "equal jitter": between half and all
      return Math.min(MAX_BACKOFF_MS, Math.max(jittered, retryAfterMs || 0));
    };

    var parseRetryAfter = function (value) {
      if (!value) return 0;
      var secs = Number(value);
      if (isFinite(secs)) return Math.max(0, secs * 1000);
      var at = Date.parse(value);
      return isFinite(at) ? Math.max(0, at - Date.now()) : 0;
    };

    var buildBody = function (event) {
      return JSON.stringify({
        event: event,
        visitor: {
          visitorId: visitorId,
          tabId: tabId,
          url: cleanUrl(location.href),
          timestamp: new Date().toISOString(),
          userAgent: navigator.userAgent,
          referrer: cleanUrl(document.referrer),
          visibility: visibility(),
          pageId: pageId
        },
        website: location.hostname
      });
    };

    // Sends one event. Resolves to true on success, false otherwise; never rejects.
    var post = function (event) {
      var body = buildBody(event);
      var sentAt = Date.now();
      var hiding = visibility() === 'hidden';
      log('send', event, visibility(), location.href);
      var request;
      try {
        if (typeof fetch === 'function') {
          request = fetch(endpoint + '/track/visitor', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': apiKey },
            body: body,
            credentials: 'omit',
            mode: 'cors',
            // A page going to the background may be frozen or discarded right after this.
            keepalive: hiding
          }).then(function (res) {
            var info = { status: res.status, retryAfter: res.headers.get('Retry-After'), body: null };
            if (!res.ok) return info;
            return res.json().then(function (b) {
              info.body = b;
              return info;
            }, function () {
              return info;
            });
          });
        } else {
          request = new Promise(function (resolve) {
            var xhr = new XMLHttpRequest();
            xhr.open('POST', endpoint + '/track/visitor', true);
            xhr.setRequestHeader('Content-Type', 'application/json');
            xhr.setRequestHeader('X-Tippen-API-Key', apiKey);
            xhr.onload = function () {
              var b = null;
              try {
                b = xhr.status < 300 ? JSON.parse(xhr.responseText) : null;
              } catch (e) {
                b = null;
              }
              resolve({ status: xhr.status, retryAfter: xhr.getResponseHeader('Retry-After'), body: b });
            };
            xhr.onerror = xhr.ontimeout = function () {
              resolve({ status: 0, retryAfter: null });
            };
            xhr.send(body);
          });
        }
      } catch (e) {
        request = Promise.resolve({ status: 0, retryAfter: null });
      }
      return request.then(null, function () {
        return { status: 0, retryAfter: null };
      }).then(function (r) {
        var retryable = r.status === 0 || r.status === 429 || r.status >= 500;
        if (!retryable) {
          failures = 0;
          backoffUntil = 0;
          if (r.status === 410) {
            // This visitor was deleted: an opt-out, kept for every later page load.
            storageSet('localStorage', OPT_OUT_KEY, '1');
          }
          if (r.status === 401 || r.status === 403 || r.status === 404 || r.status === 410) {
            // A wrong key or endpoint does not fix itself: stop until the next page load.
            log('rejected with HTTP', r.status, '- check data-tippen-api-key / data-tippen-endpoint; tracking stopped');
            disabled = true;
            stopped = true;
            schedule(0);
            closeSocket();
            return false;
          }
          if (r.status >= 400) log('rejected with HTTP', r.status, '(not retried)');
          else {
            log('ok', event);
            onInvite(r.body && typeof r.body === 'object' ? r.body.invite : null, sentAt);
          }
          schedule(heartbeatMs);
          return r.status < 400;
        }
        failures += 1;
        var delay = backoffDelay(parseRetryAfter(r.retryAfter));
        backoffUntil = Date.now() + delay;
        if (!pending || PRIORITY[event] > PRIORITY[pending]) pending = event;
        log('failed (' + (r.status || 'network error') + '), retry in', Math.round(delay), 'ms');
        schedule(delay);
        return false;
      }).then(null, function () {
        return false;
      });
    };

    var send = function (event) {
      if (stopped) return Promise.resolve(false);
      if (Date.now() < backoffUntil) {
        // The backend is down or asked us to slow down: the retry carries the latest state.
        if (!pending || PRIORITY[event] > PRIORITY[pending]) pending = event;
        log('backing off, holding', event);
        return Promise.resolve(false);
      }
      return post(event);
    };

    function onTimer() {
      timer = null;
      if (stopped) return;
      var event = pending || 'heartbeat';
      pending = null;
      backoffUntil = 0;
      post(event);
    }

    // ---- page lifecycle ----------------------------------------------------------------
    var urlMaybeChanged = function () {
      try {
        internalNavUntil = 0; // a same-document navigation, the page stays
        if (location.href === lastUrl) return;
        lastUrl = location.href;
        send('pageview');
      } catch (e) { /* never break the host page */ }
    };

    ['pushState', 'replaceState'].forEach(function (name) {
      var original = history[name];
      if (typeof original !== 'function') return;
      history[name] = function () {
        var result = original.apply(this, arguments); // its exceptions are the page's own
        urlMaybeChanged();
        return result;
      };
    });
    window.addEventListener('popstate', urlMaybeChanged);
    window.addEventListener('hashchange', urlMaybeChanged);

    document.addEventListener('visibilitychange', function () {
      try {
        send('visibility');
      } catch (e) { /* ignore */ }
    });

    // A link to another page of this site unloads this document, and the next one carries the
    // tab on under the same tab id (sessionStorage survives): that is no exit, and a leave beacon
    // would make the dashboard drop the visitor and list it again as new. Remember such a
    // navigation for a while; anything else that unloads the page (closing the tab, typing
    // another address, going to another site) is an exit.
    var internalNavUntil = 0;
    var markInternal = function (url) {
      try {
        var dest = new URL(url, location.href);
        if (dest.hostname === location.hostname && /^https?:$/.test(dest.protocol)) {
          internalNavUntil = Date.now() + 10000;
        }
      } catch (e) { /* not a URL */ }
    };
    try {
      if (window.navigation && typeof window.navigation.addEventListener === 'function') {
        window.navigation.addEventListener('navigate', function (e) {
          try {
            if (!e.hashChange && !e.downloadRequest && e.destination) markInternal(e.destination.url);
          } catch (err) { /* ignore */ }
        });
        // An intercepted (same-document) navigation finished: this document stays.
        window.navigation.addEventListener('navigatesuccess', function () {
          internalNavUntil = 0;
        });
      } else {
        // Bubbling to window, after the page's own handlers: a router's preventDefault shows.
        window.addEventListener('click', function (e) {
          try {
            if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
            var a = e.target && e.target.closest ? e.target.closest('a[href]') : null;
            if (!a || a.hasAttribute('download')) return;
            var target = a.getAttribute('target');
            if (target && target !== '_self') return;
            markInternal(a.href);
          } catch (err) { /* ignore */ }
        });
      }
    } catch (e) { /* ignore */ }

    window.addEventListener('pagehide', function () {
      try {
        stopped = true;
        if (timer) clearTimeout(timer);
        timer = null;
        closeChannel();
        closeSocket(); // no reconnect until pageshow; an open socket keeps a page out of the bfcache
        if (disabled) return;
        if (Date.now() < internalNavUntil) {
          log('moving to another page of this site: no leave beacon');
          return;
        }
        var url = endpoint + '/track/leave?apiKey=' + encodeURIComponent(apiKey);
        // A string body goes out as text/plain: a CORS-safelisted request, no preflight.
        var body = JSON.stringify({ visitorId: visitorId, tabId: tabId, pageId: pageId });
        var queued = false;
        try {
          queued = typeof navigator.sendBeacon === 'function' && navigator.sendBeacon(url, body);
        } catch (e) {
          queued = false;
        }
        if (!queued && typeof fetch === 'function') {
          fetch(url, { method: 'POST', body: body, keepalive: true, credentials: 'omit', mode: 'cors' })
            .then(null, function () {});
        }
        log('leave beacon', queued ? 'queued' : 'sent with fetch');
      } catch (e) { /* ignore */ }
    });

    window.addEventListener('pageshow', function (event) {
      try {
        if (!event.persisted || disabled) return; // the first load is counted by start()
        log('restored from the back/forward cache');
        pageId = newPageId(); // shown again: a page view after its own beacon
        stopped = false;
        internalNavUntil = 0;
        failures = 0;
        backoffUntil = 0;
        pending = null;
        lastUrl = location.href;
        openChannel();
        openSocket();
        post('pageview');
      } catch (e) { /* ignore */ }
    });

    // A duplicated tab (or a window.open with an opener) copies sessionStorage, and with it
    // our tab id. Tabs announce themselves; a newcomer that hears its id is taken picks a new one.
    var channel = null;
    var bornAt = Date.now();
    function openChannel() {
      try {
        if (channel || typeof BroadcastChannel !== 'function') return;
        channel = new BroadcastChannel('tippen_tabs');
        channel.onmessage = function (msg) {
          try {
            var data = msg.data || {};
            if (data.tabId !== tabId) return;
            if (data.type === 'hello') {
              channel.postMessage({ type: 'taken', tabId: tabId, bornAt: bornAt });
            } else if (data.type === 'taken' && data.bornAt <= bornAt) {
              tabId = newTabId();
              log('tab id was taken by another tab, now', tabId);
              send('pageview');
            }
          } catch (e) { /* ignore */ }
        };
        channel.postMessage({ type: 'hello', tabId: tabId });
      } catch (e) {
        channel = null;
      }
    }
    function closeChannel() {
      try {
        if (channel) channel.close(); // an open channel may keep the page out of the bfcache
      } catch (e) { /* ignore */ }
      channel = null;
    }
    openChannel();

    // ---- video invites -----------------------------------------------------------------
    // A pending invite rides on the /track/visitor response while it is open. It is shown once
    // (ids already shown are remembered for this tab and across its pages), answered through
    // POST /track/invite, and hidden when its countdown ends or a later response drops it.
    var SHOWN_KEY = 'tippen_invites_shown';
    var invite = null; // { id, el, timer, endsAt }
    var callEl = null;
    var shownIds = (function () {
      try {
        var list = JSON.parse(storageGet('sessionStorage', SHOWN_KEY) || '[]');
        return Array.isArray(list) ? list.filter(function (x) { return typeof x === 'string'; }) : [];
      } catch (e) {
        return [];
      }
    })();
    var rememberShown = function (id) {
      shownIds.push(id);
      if (shownIds.length > 50) shownIds = shownIds.slice(-50);
      storageSet('sessionStorage', SHOWN_KEY, JSON.stringify(shownIds));
    };
    var httpUrl = function (u) {
      try {
        var url = new URL(String(u), location.href);
        return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
      } catch (e) {
        return null;
      }
    };

    var injectStyle = function () {
      if (document.getElementById('tippen-invite-style')) return;
      var st = document.createElement('style');
      st.id = 'tippen-invite-style';
      st.textContent =
        '#tippen-invite{all:initial;position:fixed;right:20px;bottom:20px;z-index:2147483646;' +
        'box-sizing:border-box;width:320px;max-width:calc(100vw - 40px);padding:18px 18px 16px;' +
        'background:#fff;color:#1d2330;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.25);' +
        'font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;display:block}' +
        '#tippen-invite .tippen-invite-title{display:block;font-weight:700;font-size:16px;margin:0 0 4px}' +
        '#tippen-invite .tippen-invite-text{display:block;margin:0 0 12px;color:#4b5263}' +
        '#tippen-invite .tippen-invite-countdown{display:block;margin:0 0 12px;font-size:12px;color:#6b7385}' +
        '#tippen-invite .tippen-invite-actions{display:flex;gap:8px;justify-content:flex-end}' +
        '#tippen-invite button{all:initial;box-sizing:border-box;cursor:pointer;padding:8px 16px;' +
        'border-radius:8px;font:600 14px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;' +
        'border:1px solid #d5d9e0;background:#fff;color:#1d2330}' +
        '#tippen-invite button.tippen-invite-primary{background:#4f46e5;border-color:#4f46e5;color:#fff}' +
        '#tippen-invite button:focus-visible{outline:3px solid #a5b4fc;outline-offset:2px}' +
        '#tippen-call{all:initial;position:fixed;inset:0;z-index:2147483647;background:rgba(0,0,0,.85);display:block}' +
        '#tippen-call iframe{position:absolute;inset:48px 0 0 0;width:100%;height:calc(100% - 48px);border:0;background:#000}' +
        '#tippen-call button{all:initial;position:absolute;top:8px;right:12px;cursor:pointer;padding:6px 14px;' +
        'border-radius:8px;background:#fff;color:#1d2330;font:600 14px system-ui,-apple-system,Arial,sans-serif}';
      (document.head || document.documentElement).appendChild(st);
    };

    var reportInvite = function (id, type) {
      if (disabled) return;
      if (sendOnSocket({ type: type, inviteId: id })) {
        log('invite', id, type, '(socket)');
        return;
      }
      var body = JSON.stringify({ visitorId: visitorId, inviteId: id, type: type });
      log('invite', id, type);
      try {
        fetch(endpoint + '/track/invite', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': apiKey },
          body: body,
          credentials: 'omit',
          mode: 'cors',
          keepalive: true
        }).then(function (res) {
          if (!res.ok) log('invite answer', type, 'rejected with HTTP', res.status);
        }, function () {
          log('invite answer', type, 'failed');
        });
      } catch (e) { /* ignore */ }
    };

    var hideInvite = function () {
      if (!invite) return;
      if (invite.timer) clearInterval(invite.timer);
      if (invite.el && invite.el.parentNode) invite.el.parentNode.removeChild(invite.el);
      invite = null;
    };

    var closeCall = function () {
      if (callEl && callEl.parentNode) callEl.parentNode.removeChild(callEl);
      callEl = null;
    };

    var openCall = function (url) {
      closeCall();
      injectStyle();
      var box = document.createElement('div');
      box.id = 'tippen-call';
      box.setAttribute('role', 'dialog');
      box.setAttribute('aria-modal', 'true');
      box.setAttribute('aria-label', 'Video call');
      var close = document.createElement('button');
      close.type = 'button';
      close.id = 'tippen-call-close';
      close.textContent = 'Close';
      close.setAttribute('aria-label', 'Close the video call');
      close.addEventListener('click', closeCall);
      var frame = document.createElement('iframe');
      frame.src = url;
      frame.title = 'Video call';
      // Only what a call needs, for the call's origin only (the default of `allow`): no screen
      // capture, no geolocation, no payment. The sandbox keeps the frame from navigating or
      // scripting this page (no allow-top-navigation), and no referrer tells the provider
      // which page the visitor was on.
      frame.setAttribute('allow', 'camera; microphone; autoplay; fullscreen');
      frame.setAttribute('allowfullscreen', '');
      frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox');
      frame.setAttribute('referrerpolicy', 'no-referrer');
      box.appendChild(close);
      box.appendChild(frame);
      box.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') closeCall();
      });
      document.body.appendChild(box);
      try {
        close.focus();
      } catch (e) { /* ignore */ }
    };

    var showInvite = function (inv) {
      var id = inv.inviteId;
      var guestUrl = httpUrl(inv.guestUrl);
      var expiresIn = Number(inv.expiresIn);
      if (!(expiresIn > 0)) return;
      rememberShown(id);
      injectStyle();
      var who = typeof inv.invitedBy === 'string' && inv.invitedBy.trim() ? inv.invitedBy.trim().slice(0, 128) : 'Our team';
      var box = document.createElement('div');
      box.id = 'tippen-invite';
      box.setAttribute('data-invite-id', id);
      box.setAttribute('role', 'alertdialog');
      box.setAttribute('aria-live', 'assertive');
      box.setAttribute('aria-labelledby', 'tippen-invite-title');
      box.setAttribute('aria-describedby', 'tippen-invite-text');
      var title = document.createElement('span');
      title.className = 'tippen-invite-title';
      title.id = 'tippen-invite-title';
      title.textContent = 'Join a video call?';
      var text = document.createElement('span');
      text.className = 'tippen-invite-text';
      text.id = 'tippen-invite-text';
      text.textContent = who + ' invites you to a video call.';
      var countdown = document.createElement('span');
      countdown.className = 'tippen-invite-countdown';
      countdown.setAttribute('aria-hidden', 'true');
      var actions = document.createElement('span');
      actions.className = 'tippen-invite-actions';
      var decline = document.createElement('button');
      decline.type = 'button';
      decline.id = 'tippen-invite-decline';
      decline.textContent = 'Decline';
      var join = document.createElement('button');
      join.type = 'button';
      join.id = 'tippen-invite-join';
      join.className = 'tippen-invite-primary';
      join.textContent = 'Join';
      actions.appendChild(decline);
      actions.appendChild(join);
      box.appendChild(title);
      box.appendChild(text);
      box.appendChild(countdown);
      box.appendChild(actions);

      var current = { id: id, el: box, timer: null, endsAt: Date.now() + expiresIn, shownAt: Date.now() };
      var tick = function () {
        var left = Math.max(0, Math.ceil((current.endsAt - Date.now()) / 1000));
        countdown.textContent = 'Expires in ' + left + ' s';
        if (left <= 0 && invite === current) hideInvite();
      };
      decline.addEventListener('click', function () {
        if (invite !== current) return;
        hideInvite();
        reportInvite(id, 'INVITE_DECLINED');
      });
      join.addEventListener('click', function () {
        if (invite !== current) return;
        hideInvite();
        reportInvite(id, 'INVITE_ACCEPTED');
        if (guestUrl) openCall(guestUrl);
      });
      hideInvite();
      invite = current;
      tick();
      current.timer = setInterval(tick, 1000);
      document.body.appendChild(box);
      reportInvite(id, 'INVITE_SEEN');
      postInviteMessage(inv, guestUrl, who, expiresIn);
    };

    // The predecessor's host pages listened for this message on their own window.
    var postInviteMessage = function (inv, guestUrl, who, expiresIn) {
      try {
        var message = {
          type: 'TIPPEN_VIDEO_INVITE',
          inviteId: inv.inviteId,
          guestUrl: guestUrl,
          invitedBy: who,
          expiresIn: expiresIn
        };
        var origin = location.origin && location.origin !== 'null' ? location.origin : '*';
        window.postMessage(message, origin);
      } catch (e) { /* never break the host page */ }
    };

    // Called with the `invite` of every successful /track/visitor response (or null) and the time
    // its request went out, and with every VIDEO_INVITE pushed on the visitor socket (no time).
    function onInvite(inv, sentAt) {
      try {
        var valid = inv && typeof inv === 'object' && typeof inv.inviteId === 'string' && inv.inviteId;
        // A response to a request sent before the popup showed (say, the socket pushed the invite
        // while a heartbeat was in flight) is older than the popup: it neither hides nor replaces it.
        if (invite && typeof sentAt === 'number' && invite.shownAt >= sentAt &&
            !(valid && invite.id === inv.inviteId)) return;
        if (!valid) {
          hideInvite(); // no longer open (answered elsewhere, cancelled, expired)
          return;
        }
        if (invite && invite.id === inv.inviteId) return; // showing it already
        if (invite) hideInvite();
        if (shownIds.indexOf(inv.inviteId) >= 0) return; // never twice
        if (!document.body) return;
        showInvite(inv);
      } catch (e) { /* never break the host page */ }
    }

    // A VIDEO_INVITE_UPDATE from the socket: a final state hides the popup (answered in another
    // tab, cancelled, expired, the visitor left). The call frame of a visitor who joined stays.
    var FINAL_STATES = { accepted: 1, declined: 1, expired: 1, cancelled: 1, visitor_left: 1 };
    var onInviteUpdate = function (id, state) {
      if (typeof id !== 'string' || !id || !FINAL_STATES.hasOwnProperty(state)) return;
      if (shownIds.indexOf(id) < 0) rememberShown(id); // a late copy of it must not show it
      if (invite && invite.id === id) {
        log('invite', id, 'is', state, '- hiding it');
        hideInvite();
      }
    };

    // ---- visitor socket (/ws/visitor) ------------------------------------------------------
    // One per tab while the page is shown. Closed or failed: reconnected with exponential
    // backoff and jitter (1 s doubling up to 60 s). Closed on pagehide, reopened on pageshow.
    var WS_MIN_MS = 1000;
    var WS_MAX_MS = 60000;
    var WS_STABLE_MS = 30000; // open this long: the next loss starts the backoff afresh
    var sock = null;
    var sockTimer = null;
    var sockFailures = 0;
    var sockOpenedAt = 0;
    var sockWanted = false;

    var wsEndpoint = (script.getAttribute('data-tippen-ws-endpoint') || '').trim() || SERVED_VISITOR_WS_URL;
    var socketUrl = function () {
      try {
        var u = new URL(wsEndpoint || endpoint + '/ws/visitor', location.href);
        if (u.protocol === 'https:') u.protocol = 'wss:';
        else if (u.protocol === 'http:') u.protocol = 'ws:';
        else if (u.protocol !== 'wss:' && u.protocol !== 'ws:') return null;
        var query = 'apiKey=' + encodeURIComponent(apiKey) + '&visitorId=' + encodeURIComponent(visitorId);
        u.search = u.search && u.search !== '?' ? u.search + '&' + query : '?' + query;
        u.hash = '';
        return u.href;
      } catch (e) {
        return null;
      }
    };

    var onSocketMessage = function (data) {
      var msg;
      try {
        msg = JSON.parse(String(data));
      } catch (e) {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'VIDEO_INVITE') {
        log('socket: invite', msg.inviteId);
        onInvite(msg);
      } else if (msg.type === 'VIDEO_INVITE_UPDATE') {
        onInviteUpdate(msg.inviteId, msg.state);
      } else if (msg.type === 'ERROR') {
        log('socket: error', msg.error);
      }
    };

    var detach = function (ws) {
      try {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      } catch (e) { /* ignore */ }
    };

    var socketLost = function (ws) {
      if (sock !== ws) return; // already handled (error then close) or replaced
      sock = null;
      detach(ws);
      try {
        ws.close();
      } catch (e) { /* ignore */ }
      if (sockOpenedAt && Date.now() - sockOpenedAt >= WS_STABLE_MS) sockFailures = 0;
      sockOpenedAt = 0;
      if (!sockWanted || stopped || disabled) return;
      sockFailures += 1;
      var exp = Math.min(WS_MAX_MS, WS_MIN_MS * Math.pow(2, Math.min(sockFailures - 1, 16)));
      var delay = Math.min(WS_MAX_MS, Math.max(WS_MIN_MS, exp / 2 + Math.random() * (exp / 2)));
      log('socket closed, reconnecting in', Math.round(delay), 'ms');
      sockTimer = setTimeout(function () {
        sockTimer = null;
        connectSocket();
      }, delay);
    };

    function connectSocket() {
      if (sock || sockTimer || !sockWanted || stopped || disabled) return;
      if (typeof WebSocket !== 'function') return;
      var url = socketUrl();
      if (!url) return;
      var ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        return; // refused outright (a blocked scheme, say): the heartbeat carries invites
      }
      sock = ws;
      ws.onopen = function () {
        if (sock !== ws) return;
        sockOpenedAt = Date.now();
        log('socket open');
      };
      ws.onmessage = function (m) {
        try {
          if (sock === ws) onSocketMessage(m.data);
        } catch (e) { /* never break the host page */ }
      };
      ws.onerror = ws.onclose = function () {
        try {
          socketLost(ws);
        } catch (e) { /* ignore */ }
      };
    }

    function openSocket() {
      try {
        sockWanted = true;
        sockFailures = 0;
        connectSocket();
      } catch (e) { /* ignore */ }
    }

    function closeSocket() {
      try {
        sockWanted = false;
        if (sockTimer) clearTimeout(sockTimer);
        sockTimer = null;
        var ws = sock;
        sock = null;
        sockOpenedAt = 0;
        if (ws) {
          detach(ws);
          ws.close(1000);
        }
      } catch (e) { /* ignore */ }
    }

    // Sends a message on the socket if it is open. True when it went out.
    var sendOnSocket = function (msg) {
      try {
        if (!sock || sock.readyState !== 1) return false;
        sock.send(JSON.stringify(msg));
        return true;
      } catch (e) {
        return false;
      }
    };

    var api = {
      version: VERSION,
      get visitorId() {
        return visitorId;
      },
      get tabId() {
        return tabId;
      },
      // Sends a heartbeat now, ignoring any backoff. Resolves to true when the server took it.
      flush: function () {
        if (stopped) return Promise.resolve(false);
        var event = pending || 'heartbeat';
        pending = null;
        backoffUntil = 0;
        return post(event);
      },
      // Stops tracking this browser for good (kept in localStorage); the visitor leaves the
      // dashboards at once.
      optOut: function () {
        storageSet('localStorage', OPT_OUT_KEY, '1');
        var wasTracking = !disabled;
        disabled = true;
        stopped = true;
        schedule(0);
        closeSocket();
        if (!wasTracking || typeof fetch !== 'function') return Promise.resolve(true);
        return fetch(endpoint + '/track/leave?apiKey=' + encodeURIComponent(apiKey), {
          method: 'POST', body: JSON.stringify({ visitorId: visitorId }), keepalive: true, credentials: 'omit', mode: 'cors'
        }).then(function () { return true; }, function () { return true; });
      },
      get optedOut() {
        return storageGet('localStorage', OPT_OUT_KEY) === '1';
      }
    };
    try {
      Object.defineProperty(api, '__tippen', { value: true }); // marks a running copy
      Object.defineProperty(window, 'tippen', { value: api, configurable: true, enumerable: false, writable: true });
    } catch (e) {
      window.tippen = api;
    }
    try {
      if (!window.TippenTracker) window.TippenTracker = api; // the predecessor's name
    } catch (e) { /* ignore */ }

    var start = function () {
      if (api.optedOut) {
        log('this browser opted out: not tracking');
        disabled = true;
        stopped = true;
        return;
      }
      log('tracking', visitorId, tabId, 'to', endpoint, 'every', heartbeatMs, 'ms');
      post('pageview');
      openSocket();
    };
    if (document.prerendering) {
      // Chrome's speculative prerender: count the view only once the user really sees the page.
      document.addEventListener('prerenderingchange', start, { once: true });
    } else {
      start();
    }
  } catch (e) {
    // Never throw into the host page.
  }
})();
