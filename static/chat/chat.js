/*
 * The customer's chat page: a WebSocket conversation (protocol in chat/consumers.py)
 * with the REST API (chat/api.py) as a fallback when the socket cannot open.
 *
 * Everything the server sends is text: it is only ever set with textContent.
 */
(function () {
  "use strict";

  const root = document.getElementById("chat");
  if (!root) return;

  const RECONNECT_BASE_MS = 500;
  const RECONNECT_MAX_MS = 30000;
  // A socket that never opens this many times in a row means a proxy or network
  // that does not carry WebSockets: poll the REST API instead.
  const OPEN_FAILURES_BEFORE_REST = 2;
  const POLL_MS = 3000;
  const POLL_HIDDEN_MS = 15000;
  // Below common idle timeouts of proxies and load balancers.
  const PING_MS = 25000;
  const CLOSE_TOO_BIG = 4009; // the server's "message too big" (4000 + 1009)
  const CLOSE_NOT_FOUND = 4404;
  // Sockets lost with the same frame unanswered before it is given back as unsendable.
  const DROPS_BEFORE_GIVING_UP = 2;
  const ROLES = ["customer", "assistant", "staff", "system"];
  const LINK_GONE =
    "This chat link is no longer valid. Ask the shop to send you a new one.";

  const config = {
    wsPath: root.dataset.wsPath,
    apiBase: root.dataset.apiBase,
  };
  const els = {
    main: root.querySelector(".chat-main"),
    header: root.querySelector(".chat-header"),
    list: document.getElementById("messages"),
    typing: document.getElementById("typing"),
    modeNote: document.getElementById("mode-note"),
    status: document.getElementById("conn-status"),
    error: document.getElementById("chat-error"),
    form: document.getElementById("composer"),
    input: document.getElementById("composer-text"),
    send: root.querySelector(".composer-send"),
  };
  const locationName = textOf(root.querySelector(".chat-location-name"));

  const seenIds = new Set();
  let lastId = Number(root.dataset.lastId) || 0;
  // Frames not yet acknowledged by a stored message with their client_id; resent
  // after a reconnect, which the server de-duplicates by client_id.
  const outbox = new Map();
  // client_ids sent on the current socket, oldest first. The consumer answers one
  // frame before it reads the next, so an error belongs to the oldest.
  let inFlight = [];
  // The assistant's answers as they are written, by the customer message they answer.
  const streams = new Map();
  let mode = root.dataset.mode;

  let transport = "ws";
  let socket = null;
  let openFailures = 0;
  let retries = 0;
  let reconnectTimer = 0;
  let pingTimer = 0;
  let pollTimer = 0;
  let polling = false;
  let gone = false;

  // --- rendering -----------------------------------------------------------------

  function textOf(node) {
    return node ? node.textContent.trim() : "";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cssToken(value) {
    return String(value || "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
  }

  function formatTime(iso) {
    const when = new Date(iso);
    if (!iso || Number.isNaN(when.getTime())) return "";
    const sameDay = when.toDateString() === new Date().toDateString();
    const options = { hour: "numeric", minute: "2-digit" };
    if (!sameDay) {
      options.weekday = "short";
      options.month = "short";
      options.day = "numeric";
    }
    return when.toLocaleString([], options);
  }

  function timeElement(iso) {
    const node = el("time", "msg-time", formatTime(iso));
    if (iso) node.dateTime = String(iso);
    return node;
  }

  function slotGroup(slots) {
    const group = el("div", "slots");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Open times");
    for (const slot of slots) {
      const button = el("button", "slot", slot.label);
      button.type = "button";
      button.dataset.slot = String(slot.id);
      button.disabled = true;
      group.append(button);
    }
    return group;
  }

  function appointmentTitle(status) {
    if (status === "booked") return "You're booked";
    if (status === "cancelled") return "Cancelled";
    return "Appointment";
  }

  function appointmentCard(appointment) {
    const card = el("div", "appt appt-" + cssToken(appointment.status));
    card.append(el("p", "appt-title", appointmentTitle(appointment.status)));
    card.append(el("p", "appt-service", appointment.service));
    card.append(el("p", "appt-when", appointment.label));
    const where = [appointment.location, appointment.address]
      .filter(Boolean)
      .join(", ");
    if (where) card.append(el("p", "appt-where", where));
    if (appointment.price) card.append(el("p", "appt-price", appointment.price));
    return card;
  }

  function messageElement(message) {
    const role = ROLES.includes(message.role) ? message.role : "system";
    const item = el("li", "msg msg-" + role);
    item.dataset.id = String(message.id);
    if (message.client_id) item.dataset.clientId = String(message.client_id);
    if (role === "staff") {
      item.append(
        el("p", "msg-author", (message.author || "The team") + " from " + locationName)
      );
    }
    item.append(el("p", "msg-text", message.text));
    if (Array.isArray(message.slots) && message.slots.length) {
      item.append(slotGroup(message.slots));
    }
    if (message.appointment && typeof message.appointment === "object") {
      item.append(appointmentCard(message.appointment));
    }
    item.append(timeElement(message.created_at));
    return item;
  }

  // The list stays in order of a key: stored messages by id, a streamed answer just
  // after the message it answers, unsent messages last.
  function place(item, key) {
    item.dataset.key = String(key);
    let before = els.list.lastElementChild;
    while (before && Number(before.dataset.key) > key) {
      before = before.previousElementSibling;
    }
    if (before) before.after(item);
    else els.list.prepend(item);
  }

  function nearBottom() {
    const main = els.main;
    return main.scrollHeight - main.scrollTop - main.clientHeight < 120;
  }

  function scrollToEnd(force) {
    if (force || nearBottom()) els.main.scrollTop = els.main.scrollHeight;
  }

  // Only the latest offer can be booked, and only until something was booked after it.
  function refreshSlotGroups() {
    let live = null;
    const items = els.list.querySelectorAll("li.msg[data-id]");
    for (let i = items.length - 1; i >= 0; i -= 1) {
      const group = items[i].querySelector(".slots");
      if (group) {
        live = group;
        break;
      }
      if (items[i].querySelector(".appt")) break;
    }
    for (const group of els.list.querySelectorAll(".slots")) {
      const usable = group === live && !group.dataset.used && !gone;
      for (const button of group.querySelectorAll("button.slot")) {
        button.disabled = !usable;
      }
    }
  }

  function showUpcoming(appointment) {
    let line = document.getElementById("chat-upcoming");
    if (appointment.status !== "booked") {
      if (line && appointment.status === "cancelled") line.remove();
      return;
    }
    if (!line) {
      line = el("p", "chat-upcoming");
      line.id = "chat-upcoming";
      els.header.append(line);
    }
    line.textContent =
      "Your appointment: " + appointment.service + ", " + appointment.label;
  }

  // --- the conversation's state --------------------------------------------------

  function receive(message) {
    if (!message || typeof message.id !== "number" || seenIds.has(message.id)) return;
    const follow = nearBottom();
    seenIds.add(message.id);
    lastId = Math.max(lastId, message.id);
    if (message.client_id) acknowledge(message.client_id);
    if (message.role === "assistant") dropStreamAnsweredBy(message.id);
    place(messageElement(message), message.id);
    if (message.slots || message.appointment) refreshSlotGroups();
    if (message.appointment) showUpcoming(message.appointment);
    scrollToEnd(follow || message.role === "customer");
  }

  function acknowledge(clientId) {
    const entry = outbox.get(clientId);
    if (!entry) return;
    outbox.delete(clientId);
    inFlight = inFlight.filter((id) => id !== clientId);
    if (entry.item) entry.item.remove();
    if (entry.button) entry.button.removeAttribute("aria-busy");
  }

  function fail(clientId, code, text) {
    const entry = outbox.get(clientId);
    outbox.delete(clientId);
    inFlight = inFlight.filter((id) => id !== clientId);
    if (entry && entry.item) {
      entry.item.remove();
      // Give the customer their words back to shorten or send later.
      if (!els.input.value) els.input.value = entry.frame.text;
    }
    if (entry && entry.button) {
      entry.button.removeAttribute("aria-busy");
      if (code !== "slot_not_offered") delete entry.group.dataset.used;
      refreshSlotGroups();
    }
    showError(text);
  }

  function streamFor(replyTo) {
    const key = Number.isFinite(replyTo) ? replyTo : lastId;
    let item = streams.get(key);
    if (!item) {
      item = el("li", "msg msg-assistant msg-streaming");
      item.setAttribute("aria-busy", "true");
      item.append(el("p", "msg-text", ""));
      streams.set(key, item);
      place(item, key + 0.5);
    }
    return item;
  }

  function onDelta(event) {
    const follow = nearBottom();
    const item = streamFor(Number(event.reply_to));
    item.firstChild.textContent += String(event.text || "");
    els.typing.hidden = true;
    scrollToEnd(follow);
  }

  function dropStream(replyTo) {
    const item = streams.get(replyTo);
    if (item) item.remove();
    streams.delete(replyTo);
  }

  // A stored answer replaces the oldest answer still being written before it.
  function dropStreamAnsweredBy(messageId) {
    const keys = [...streams.keys()].filter((key) => key < messageId);
    if (keys.length) dropStream(Math.min(...keys));
  }

  function dropStreams() {
    for (const key of [...streams.keys()]) dropStream(key);
  }

  function setTyping(active) {
    els.typing.hidden = !active || streams.size > 0;
  }

  function setMode(next) {
    if (next !== "assistant" && next !== "human") return;
    mode = next;
    els.modeNote.hidden = mode !== "human";
  }

  function showError(text) {
    els.error.textContent = text || "Something went wrong. Please try again.";
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  function setStatus(text) {
    els.status.textContent = text || "";
    els.status.hidden = !text;
  }

  // "connecting", "live" (socket), "polling" (REST) or "closed": for styles and tests.
  function setConnection(state) {
    root.dataset.connection = state;
  }

  function linkGone() {
    gone = true;
    setConnection("closed");
    clearTimeout(reconnectTimer);
    clearTimeout(pollTimer);
    clearInterval(pingTimer);
    if (socket) socket.close();
    els.input.disabled = true;
    els.send.disabled = true;
    setStatus("");
    setTyping(false);
    refreshSlotGroups();
    showError(LINK_GONE);
  }

  // --- sending -------------------------------------------------------------------

  function newClientId() {
    const cryptoApi = window.crypto;
    if (cryptoApi && typeof cryptoApi.randomUUID === "function") {
      return cryptoApi.randomUUID();
    }
    // randomUUID needs a secure context; a page served over plain http has not.
    const bytes = new Uint8Array(16);
    if (cryptoApi && cryptoApi.getRandomValues) {
      cryptoApi.getRandomValues(bytes);
    } else {
      for (let i = 0; i < bytes.length; i += 1) {
        bytes[i] = Math.floor(Math.random() * 256);
      }
    }
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function sendText(text) {
    const clientId = newClientId();
    const item = el("li", "msg msg-customer msg-pending");
    item.append(el("p", "msg-text", text));
    item.append(el("span", "visually-hidden", "Sending"));
    place(item, Infinity);
    scrollToEnd(true);
    outbox.set(clientId, {
      frame: { type: "message", text: text, client_id: clientId },
      item: item,
    });
    transmit(clientId);
  }

  function book(button) {
    const group = button.closest(".slots");
    group.dataset.used = "1";
    button.setAttribute("aria-busy", "true");
    refreshSlotGroups();
    clearError();
    const clientId = newClientId();
    outbox.set(clientId, {
      frame: { type: "book", slot: button.dataset.slot, client_id: clientId },
      button: button,
      group: group,
    });
    transmit(clientId);
  }

  function transmit(clientId) {
    const entry = outbox.get(clientId);
    if (!entry || gone) return;
    if (transport === "rest") {
      restSend(clientId, entry);
    } else if (socket && socket.readyState === WebSocket.OPEN && socket.ready) {
      socket.send(JSON.stringify(entry.frame));
      inFlight.push(clientId);
    }
    // Otherwise it goes out when the socket is back.
  }

  function submit() {
    const text = els.input.value.trim();
    if (!text || gone) return;
    els.input.value = "";
    clearError();
    sendText(text);
  }

  // --- the socket ------------------------------------------------------------------

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const after = lastId ? "?after=" + encodeURIComponent(lastId) : "";
    return scheme + "//" + window.location.host + config.wsPath + after;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (gone || transport !== "ws") return;
    setConnection("connecting");
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (error) {
      closed(null, false, 0);
      return;
    }
    socket = ws;
    let opened = false;
    ws.onopen = function () {
      opened = true;
      openFailures = 0;
    };
    ws.onmessage = function (event) {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (data && typeof data === "object") handle(ws, data);
    };
    ws.onclose = function (event) {
      closed(ws, opened, event.code);
    };
  }

  function closed(ws, opened, code) {
    if (ws && socket !== ws) return;
    socket = null;
    clearInterval(pingTimer);
    const head = inFlight.length ? outbox.get(inFlight[0]) : null;
    if (head && code === CLOSE_TOO_BIG) {
      fail(inFlight[0], "too_long", "That message is too long. Please shorten it.");
    } else if (head && code !== 1000) {
      // A frame that takes the socket down every time must not be resent forever.
      head.drops = (head.drops || 0) + 1;
      if (head.drops >= DROPS_BEFORE_GIVING_UP) {
        fail(
          inFlight[0],
          "undeliverable",
          "That message could not be sent. Please shorten it or try again."
        );
      }
    }
    inFlight = [];
    // A partial answer on a lost socket is never finished there; the stored answer
    // comes with the next history.
    dropStreams();
    setTyping(false);
    if (gone) return;
    setConnection("connecting");
    if (code === CLOSE_NOT_FOUND) {
      linkGone();
      return;
    }
    if (!opened) {
      openFailures += 1;
      if (openFailures >= OPEN_FAILURES_BEFORE_REST) {
        startRest();
        return;
      }
    }
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** retries);
    retries += 1;
    setStatus("Reconnecting…");
    reconnectTimer = setTimeout(connect, delay * (0.75 + Math.random() / 2));
  }

  function handle(ws, event) {
    switch (event.type) {
      case "history":
        // Frames wait for the history, so that what it acknowledges is not resent.
        ws.ready = true;
        setConnection("live");
        retries = 0;
        setStatus("");
        (event.messages || []).forEach(receive);
        setMode(event.mode);
        clearInterval(pingTimer);
        pingTimer = setInterval(() => {
          if (ws.readyState === WebSocket.OPEN) {
            ws.send(JSON.stringify({ type: "ping" }));
          }
        }, PING_MS);
        for (const clientId of outbox.keys()) transmit(clientId);
        break;
      case "message":
        receive(event.message);
        break;
      case "typing":
        setTyping(Boolean(event.active));
        break;
      case "delta":
        onDelta(event);
        break;
      case "reset":
        dropStream(Number(event.reply_to));
        break;
      case "mode":
        setMode(event.mode);
        break;
      case "error":
        onError(event);
        break;
      default:
        break; // pong, and whatever a newer server adds
    }
  }

  function onError(event) {
    if (event.code === "assistant_unavailable") {
      dropStreams();
      setTyping(false);
      showError(event.message);
      return;
    }
    if (inFlight.length) fail(inFlight[0], event.code, event.message);
    else showError(event.message);
  }

  function reconnectNow() {
    if (transport === "ws" && !socket && !gone) {
      retries = 0;
      connect();
    }
  }

  // --- the REST fallback -------------------------------------------------------------

  function api(method, path, body) {
    const init = {
      method: method,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(config.apiBase + path, init).then((response) =>
      response
        .json()
        .catch(() => ({}))
        .then((data) => ({ status: response.status, data: data || {} }))
    );
  }

  function errorText(data) {
    if (typeof data.detail === "string") return data.detail;
    for (const value of Object.values(data)) {
      if (Array.isArray(value) && typeof value[0] === "string") return value[0];
    }
    return "";
  }

  function startRest() {
    transport = "rest";
    setConnection("polling");
    setStatus("");
    for (const clientId of outbox.keys()) transmit(clientId);
    poll();
  }

  function restSend(clientId, entry) {
    if (entry.sending) return;
    entry.sending = true;
    const booking = entry.frame.type === "book";
    // The answer comes with the response: the assistant writes it meanwhile.
    if (!booking && mode === "assistant") setTyping(true);
    const request = booking
      ? api("POST", "/appointment", { slot: entry.frame.slot, client_id: clientId })
      : api("POST", "/messages", { text: entry.frame.text, client_id: clientId });
    request
      .then(({ status, data }) => {
        if (status === 404) {
          linkGone();
        } else if (status < 300 || (booking && status === 409)) {
          if (booking) (data.messages || []).forEach(receive);
          else [data.message].concat(data.replies || []).forEach(receive);
        } else if (status < 500) {
          fail(clientId, data.error || "", errorText(data));
        }
        // 5xx: kept, and sent again (same client_id) with the next poll.
      })
      .catch(() => {})
      .finally(() => {
        entry.sending = false;
        if (!booking) setTyping(false);
      });
  }

  function poll() {
    clearTimeout(pollTimer);
    if (gone || polling) return;
    polling = true;
    const after = lastId ? "?after=" + encodeURIComponent(lastId) : "";
    api("GET", "/messages" + after)
      .then(({ status, data }) => {
        if (status === 404) {
          linkGone();
          return;
        }
        if (status === 200) {
          setStatus("");
          (data.messages || []).forEach(receive);
          setMode(data.mode);
        }
      })
      .catch(() => setStatus("Connection lost. Trying again…"))
      .finally(() => {
        polling = false;
        if (gone) return;
        for (const clientId of outbox.keys()) transmit(clientId);
        pollTimer = setTimeout(poll, document.hidden ? POLL_HIDDEN_MS : POLL_MS);
      });
  }

  // --- start ---------------------------------------------------------------------

  for (const item of els.list.querySelectorAll("li.msg[data-id]")) {
    const id = Number(item.dataset.id);
    seenIds.add(id);
    item.dataset.key = String(id);
    const time = item.querySelector("time.msg-time");
    if (time) time.textContent = formatTime(time.getAttribute("datetime"));
  }
  refreshSlotGroups();
  scrollToEnd(true);

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  els.list.addEventListener("click", (event) => {
    const button = event.target.closest("button.slot");
    if (button && !button.disabled && !gone) book(button);
  });
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    if (transport === "rest") poll();
    else reconnectNow();
  });

  els.input.disabled = false;
  els.send.disabled = false;
  if ("WebSocket" in window) connect();
  else startRest();
})();
