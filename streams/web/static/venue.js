/* Venue screen: render snapshots pushed by the worker over server-sent events.
   Amounts arrive formatted on the server (rekap.money), so the page shows exactly
   what the API and `rekap watch` show. No framework, no downloads. */
(function () {
  "use strict";
  var eventId = document.body.getAttribute("data-event");
  var $ = function (id) { return document.getElementById(id); };
  var timezone = "Asia/Jakarta";
  var seenTicker = {};
  var firstRender = true;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setLive(state, text) {
    $("live").setAttribute("data-state", state);
    $("live-text").textContent = text;
  }

  function tick() {
    try {
      $("clock").textContent = new Intl.DateTimeFormat("id-ID", {
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: timezone
      }).format(new Date()).replace(/:/g, ".") + " " + (timezone === "Asia/Jakarta" ? "WIB" : "");
    } catch (e) {
      $("clock").textContent = "";
    }
  }

  function renderBoard(rows) {
    var board = $("board");
    var old = {};
    Array.prototype.forEach.call(board.children, function (li) {
      old[li.getAttribute("data-ikm")] = li.getAttribute("data-amount");
    });
    var top = rows.length ? rows[0].amount_idr : 0;
    var items = rows.map(function (r) {
      var li = el("li");
      li.setAttribute("data-ikm", r.ikm_id);
      li.setAttribute("data-rank", String(r.rank));
      li.setAttribute("data-amount", String(r.amount_idr));
      var bar = el("span", "bar");
      bar.style.width = (top > 0 ? Math.max(2, 100 * r.amount_idr / top) : 0) + "%";
      li.appendChild(bar);
      li.appendChild(el("span", "rank", String(r.rank)));
      li.appendChild(el("span", "name", r.name));
      li.appendChild(el("span", "share", r.share_pct));
      var amount = el("span", "amount", r.amount_text);
      amount.title = r.amount_exact;
      li.appendChild(amount);
      if (!firstRender && old[r.ikm_id] !== String(r.amount_idr)) li.classList.add("flash");
      return li;
    });
    board.replaceChildren.apply(board, items);
    $("board-empty").hidden = rows.length > 0;
  }

  function renderChannels(channels) {
    $("channels").replaceChildren.apply($("channels"), channels.map(function (c) {
      var li = el("li");
      li.setAttribute("data-channel", c.channel);
      var label = el("span", "ch-label", c.label + " ");
      label.appendChild(el("span", "ch-count", c.count.toLocaleString("id-ID") + " transaksi"));
      li.appendChild(label);
      li.appendChild(el("span", "ch-amount", c.amount_text));
      return li;
    }));
  }

  function renderTicker(items) {
    var next = {};
    $("ticker").replaceChildren.apply($("ticker"), items.map(function (t) {
      var li = el("li", t.kind === "refund" ? "refund" : "");
      li.setAttribute("data-sale", t.sale_id);
      if (!firstRender && !seenTicker[t.sale_id]) li.classList.add("new");
      next[t.sale_id] = true;
      li.appendChild(el("span", "t-name", t.name + " "));
      li.appendChild(el("span", "t-amount", t.amount_text));
      li.appendChild(el("span", "t-meta", " · " + t.channel_label + (t.time ? " · " + t.time : "")));
      return li;
    }));
    seenTicker = next;
  }

  function render(s) {
    timezone = s.timezone || timezone;
    $("event-name").textContent = s.name;
    $("venue").textContent = s.venue + " · " + formatRange(s.starts_on, s.ends_on);
    document.title = "Papan Peringkat · " + s.name;
    $("total").textContent = s.total_text;
    $("total").setAttribute("data-amount", String(s.total_idr));
    $("total-exact").textContent = s.total_exact;
    $("count").textContent = s.count_text;
    $("count").setAttribute("data-count", String(s.count));
    $("ranked").textContent = String(s.ranked_ikm);
    $("ikm-count").textContent = String(s.ikm_count);
    renderBoard(s.leaderboard);
    renderChannels(s.channels);
    renderTicker(s.ticker);
    // Redis lost writes and a worker is replaying the ledger: say the figures are catching up.
    $("recovering").hidden = !s.recovering;
    document.body.setAttribute("data-recovering", s.recovering ? "1" : "0");
    document.body.setAttribute("data-signature", s.signature.join("-"));
    firstRender = false;
  }

  var MONTHS = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
                "September", "Oktober", "November", "Desember"];
  function formatRange(a, b) {
    var pa = a.split("-"), pb = b.split("-");
    var da = +pa[2] + " " + MONTHS[+pa[1] - 1], db = +pb[2] + " " + MONTHS[+pb[1] - 1] + " " + pb[0];
    if (pa[0] !== pb[0]) da += " " + pa[0];
    else if (pa[1] === pb[1]) da = String(+pa[2]);
    return da + "–" + db;
  }

  function connect() {
    var source = new EventSource("/api/v1/events/" + encodeURIComponent(eventId) + "/stream");
    source.addEventListener("snapshot", function (msg) {
      render(JSON.parse(msg.data));
      setLive("live", "Langsung");
    });
    source.onopen = function () { setLive("live", "Langsung"); };
    source.onerror = function () { setLive("lost", "Menyambung ulang…"); };
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
