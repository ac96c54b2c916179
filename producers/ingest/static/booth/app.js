/* Kasir Booth: record sales at an expo booth, offline first, each sale delivered once.
 *
 * Every sale is written to an IndexedDB outbox the moment it is captured, with its
 * sale_id (a ULID minted here) and occurred_at (capture time, the device's offset).
 * A sync loop posts pending sales to ingest in batches and settles each one from
 * ingest's per-item answer: accepted -> terkirim, rejected -> ditolak (with the
 * reason), unavailable -> stays menunggu. Network errors, 429 and 503 back off
 * (exponential, full jitter, Retry-After honoured). Resending an accepted sale is
 * harmless: the worker de-duplicates by sale_id, which is what makes it exactly once.
 *
 * The token lives only in IndexedDB; after pairing it is never in a URL. All URLs are
 * relative, so the app works behind TLS or a reverse proxy unchanged. No inline code:
 * the page runs under a strict Content-Security-Policy.
 */

const API = new URL('../v1/', location.href);
const DB_NAME = 'rekap-booth';
const DB_VERSION = 1;
/** Sales per request: one request settles a morning's queue, far under ingest's limits. */
const BATCH = 100;
/** Backoff of failed syncs: full jitter in [0, min(CAP, BASE * 2^n)). */
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 60000;
/** The timer that retries even if no online event comes (captive portals, flaky Wi-Fi). */
const TICK_MS = 15000;
const REQUEST_TIMEOUT_MS = 20000;
const LATEST = 50;

const STATE_TEXT = { pending: 'menunggu', sent: 'terkirim', rejected: 'ditolak' };
const REASON_TEXT = {
  amount_too_large: 'Jumlah melebihi batas acara',
  non_positive_amount: 'Jumlah harus lebih dari nol',
  bad_quantity: 'Jumlah barang tidak valid',
  outside_event_window: 'Di luar tanggal acara',
  bad_timestamp: 'Waktu penjualan tidak valid',
  booth_not_allowed: 'Booth ini tidak berhak untuk IKM/acara tersebut',
  unknown_ikm: 'IKM tidak dikenal',
  ikm_not_in_event: 'IKM tidak ikut acara ini',
  unknown_event: 'Acara tidak dikenal',
  unknown_booth: 'Booth tidak dikenal',
  refund_without_target: 'Refund tanpa penjualan asal',
  unknown_refund_target: 'Penjualan yang di-refund tidak ditemukan',
  refund_exceeds_sale: 'Refund melebihi penjualan',
  sale_id_conflict: 'ID penjualan bentrok',
  body_too_large: 'Data penjualan terlalu besar',
  bad_id: 'ID tidak valid',
  missing_field: 'Data tidak lengkap',
  wrong_type: 'Data tidak valid',
};
const PAIR_TEXT = {
  unknown_code: 'Kode pemasangan tidak dikenal.',
  code_used: 'Kode pemasangan ini sudah dipakai.',
  code_expired: 'Kode pemasangan ini sudah kedaluwarsa.',
  token_revoked: 'Token untuk tautan ini sudah diganti atau dicabut.',
  bad_pairing_request: 'Tautan pemasangan rusak.',
};

const $ = (id) => document.getElementById(id);
const app = { db: null, pairing: null, blocked: false, lastError: '' };
const sync = { running: false, again: false, failures: 0, timer: null, limit: BATCH };

// -- money, time, ids ------------------------------------------------------------------

function groupDigits(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, '.');
}

function formatIdr(amount) {
  const sign = amount < 0 ? '−' : '';
  return `${sign}Rp ${groupDigits(String(Math.abs(amount)))}`;
}

function parseAmount(text) {
  const digits = String(text).replace(/\D/g, '');
  if (!digits || digits.length > 15) return null;
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : null;
}

/** Reformat an amount field as the staff type ("1250000" -> "1.250.000"), caret kept. */
function formatAmountField(input) {
  const caret = input.selectionStart ?? input.value.length;
  const digitsBefore = input.value.slice(0, caret).replace(/\D/g, '').replace(/^0+/, '').length;
  const digits = input.value.replace(/\D/g, '').replace(/^0+/, '').slice(0, 15);
  const text = digits ? groupDigits(digits) : '';
  input.value = text;
  let pos = 0;
  for (let seen = 0; pos < text.length && seen < digitsBefore; pos += 1) {
    if (/\d/.test(text[pos])) seen += 1;
  }
  input.setSelectionRange(pos, pos);
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** RFC 3339 with the device's own offset, e.g. 2026-06-01T13:45:07+07:00. */
function rfc3339(date) {
  const off = -date.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The local date (YYYY-MM-DD) of a moment in a time zone: how the worker buckets days. */
function localDay(date, timeZone) {
  try {
    const parts = new Intl.DateTimeFormat('en-CA', {
      timeZone, year: 'numeric', month: '2-digit', day: '2-digit',
    }).formatToParts(date);
    const get = (type) => parts.find((p) => p.type === type).value;
    return `${get('year')}-${get('month')}-${get('day')}`;
  } catch (_) {
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }
}

function clock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ulidState = { ms: -1, random: null };

/** A ULID: 48-bit ms time + 80 random bits; monotonic within a ms (random part + 1). */
function ulid(now = Date.now()) {
  if (now <= ulidState.ms) {
    now = ulidState.ms;
    const r = ulidState.random;
    let i = r.length - 1;
    while (i >= 0 && r[i] === 255) { r[i] = 0; i -= 1; }
    if (i < 0) { now += 1; crypto.getRandomValues(r); } else { r[i] += 1; }
  } else {
    ulidState.random = crypto.getRandomValues(new Uint8Array(10));
  }
  ulidState.ms = now;
  let time = '';
  for (let i = 0, t = now; i < 10; i += 1, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  let n = 0n;
  for (const b of ulidState.random) n = (n << 8n) | BigInt(b);
  let rand = '';
  for (let i = 0; i < 16; i += 1, n >>= 5n) rand = CROCKFORD[Number(n & 31n)] + rand;
  return time + rand;
}

// -- IndexedDB ---------------------------------------------------------------------------

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb() {
  const request = indexedDB.open(DB_NAME, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore('config');
    const outbox = db.createObjectStore('outbox', { keyPath: 'sale_id' });
    outbox.createIndex('booth', 'booth_id');
  };
  return promised(request);
}

/** Run fn(stores) in one transaction; resolves with fn's result once it is committed. */
function transact(names, mode, fn) {
  return new Promise((resolve, reject) => {
    const tx = app.db.transaction(names, mode, { durability: 'strict' });
    const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
    let result;
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
    Promise.resolve(fn(stores)).then((value) => { result = value; }, (err) => {
      try { tx.abort(); } catch (_) { /* already finished */ }
      reject(err);
    });
  });
}

const getConfig = (key) => transact(['config'], 'readonly', (s) => promised(s.config.get(key)));
const putConfig = (key, value) => transact(['config'], 'readwrite', (s) => { s.config.put(value, key); });
const boothRecords = (boothId) => transact(['outbox'], 'readonly',
  (s) => promised(s.outbox.index('booth').getAll(boothId)));

// -- HTTP --------------------------------------------------------------------------------

async function call(path, { method = 'GET', token = null, body = undefined } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    const response = await fetch(new URL(path, API), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit', signal: controller.signal,
    });
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    return { reached: true, status: response.status, data, retryAfter: response.headers.get('Retry-After') };
  } catch (err) {
    return { reached: false, status: 0, data: null, error: String(err) };
  } finally {
    clearTimeout(timer);
  }
}

function retryAfterMs(header) {
  if (!header) return 0;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
}

// -- pairing -----------------------------------------------------------------------------

function pairCodeFromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  return params.get('pair');
}

function clearHash() {
  history.replaceState(null, '', location.pathname + location.search);
}

async function savePairing(token, profile) {
  app.pairing = { token, profile, paired_at: new Date().toISOString() };
  await putConfig('pairing', app.pairing);
  app.blocked = false;
  $('auth-error').hidden = true;
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
}

async function pairWithCode(code) {
  showPair('Memasangkan perangkat…');
  const reply = await call('booth/pair', { method: 'POST', body: { code } });
  if (!reply.reached || reply.status >= 500 || reply.status === 429) {
    showPair('Tidak bisa menghubungi server. Periksa Wi-Fi lalu coba lagi.', true);
    return;
  }
  clearHash();  // the code is spent or useless now: keep it out of history and bookmarks
  if (reply.status !== 200 || !reply.data || !reply.data.token) {
    const reason = reply.data && reply.data.error ? reply.data.error.reason : '';
    const text = `${PAIR_TEXT[reason] || 'Pemasangan gagal.'} Minta tautan baru ke panitia.`;
    if (app.pairing && app.pairing.profile) { showApp(); notice(text, true); } else showPair(text);
    return;
  }
  await savePairing(reply.data.token, null);
  await refreshProfile();
}

async function pairWithToken(token) {
  showPair('Memeriksa token…');
  const reply = await call('booth/me', { token });
  if (!reply.reached) { showPair('Tidak bisa menghubungi server. Periksa Wi-Fi lalu coba lagi.'); return; }
  if (reply.status === 401) { showPair('Token tidak dikenal atau sudah dicabut.'); return; }
  if (reply.status !== 200) { showPair('Ini bukan token booth.'); return; }
  await savePairing(token, reply.data);
  showApp();
  runSync();
}

/** Fetch the booth's profile (event, IKM); offline it keeps the stored one. */
async function refreshProfile() {
  if (!app.pairing) return;
  const reply = await call('booth/me', { token: app.pairing.token });
  if (reply.status === 200 && reply.data) {
    app.pairing = { ...app.pairing, profile: reply.data };
    await putConfig('pairing', app.pairing);
  } else if (reply.status === 401) {
    revoked();
  }
  if (app.pairing.profile) { showApp(); await render(); runSync(); }
  else showPair('Perangkat sudah dipasangkan; data booth belum termuat.', true);
}

function revoked() {
  app.blocked = true;
  $('auth-error').hidden = false;
}

// -- screens -----------------------------------------------------------------------------

function showPair(message, retry = false) {
  document.documentElement.dataset.app = app.pairing && app.pairing.profile ? 'paired' : 'unpaired';
  $('pair').hidden = false;
  $('pair-message').textContent = message;
  $('pair-retry').hidden = !retry;
  $('app').hidden = !(app.pairing && app.pairing.profile);
}

function showApp() {
  document.documentElement.dataset.app = 'paired';
  $('pair').hidden = true;
  $('app').hidden = false;
  const { profile } = app.pairing;
  $('booth-name').textContent = `Booth ${profile.booth_id}`;
  $('event-name').textContent = profile.event.name;
  $('footer-booth').textContent = `Booth ${profile.booth_id} · ${profile.event.id}`;
  $('unpair').hidden = false;
  const select = $('ikm');
  const chosen = select.value;
  select.replaceChildren(...profile.ikm.map((i) => new Option(i.name, i.id)));
  if (profile.ikm.some((i) => i.id === chosen)) select.value = chosen;
  $('ikm-row').hidden = profile.ikm.length < 2;
  $('ikm-single').hidden = profile.ikm.length !== 1;
  if (profile.ikm.length === 1) $('ikm-single').textContent = profile.ikm[0].name;
}

function notice(text, isError) {
  $('form-ok').hidden = isError;
  $('form-error').hidden = !isError;
  $(isError ? 'form-error' : 'form-ok').textContent = text;
}

function ikmName(id) {
  const found = app.pairing.profile.ikm.find((i) => i.id === id);
  return found ? found.name : id;
}

function showNet() {
  const net = $('net');
  if (!navigator.onLine) { net.dataset.state = 'offline'; net.textContent = 'Luring'; }
  else if (app.lastError) { net.dataset.state = 'offline'; net.textContent = 'Server tak terjangkau'; }
  else { net.dataset.state = 'online'; net.textContent = 'Daring'; }
}

function showSync(text, state = 'idle') {
  const pill = $('sync');
  pill.textContent = text;
  pill.dataset.state = state;
}

/** Today's figures and the latest sales, from this device's outbox. */
async function render() {
  showNet();
  if (!app.pairing || !app.pairing.profile) return;
  const { profile } = app.pairing;
  const records = await boothRecords(profile.booth_id);
  const tz = profile.event.timezone;
  const today = localDay(new Date(), tz);
  const totals = { count: 0, gross: 0, refunds: 0, pending: 0, rejected: 0 };
  const refunded = new Map();
  for (const r of records) {
    if (r.state === 'pending') totals.pending += 1;
    if (r.state === 'rejected') { totals.rejected += 1; continue; }
    const p = r.payload;
    if (p.kind === 'refund') refunded.set(p.refund_of, (refunded.get(p.refund_of) || 0) + p.amount_idr);
    if (localDay(new Date(p.occurred_at), tz) !== today) continue;
    if (p.kind === 'refund') totals.refunds += p.amount_idr;
    else { totals.count += 1; totals.gross += p.amount_idr; }
  }
  $('today-date').textContent = `(${today})`;
  $('t-count').textContent = String(totals.count);
  $('t-gross').textContent = formatIdr(totals.gross);
  $('t-refunds').textContent = formatIdr(totals.refunds);
  $('t-net').textContent = formatIdr(totals.gross - totals.refunds);
  $('t-pending').textContent = String(totals.pending);
  $('t-rejected').textContent = String(totals.rejected);
  records.sort((a, b) => (a.sale_id < b.sale_id ? 1 : -1));
  const latest = records.slice(0, LATEST);
  $('empty').hidden = latest.length > 0;
  $('sales').replaceChildren(...latest.map((r) => saleItem(r, refunded, profile.ikm.length > 1)));
  if (!sync.running) {
    if (app.blocked) showSync('Token ditolak', 'error');
    else if (totals.pending === 0) showSync(records.length ? 'Semua terkirim' : '', 'idle');
    else showSync(`${totals.pending} menunggu`, 'offline');
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function saleItem(record, refunded, manyIkm) {
  const p = record.payload;
  const li = el('li');
  li.dataset.sale = record.sale_id;
  li.dataset.state = record.state;
  li.dataset.kind = p.kind;
  li.dataset.amount = String(p.amount_idr);
  li.append(el('span', 'time', clock(new Date(p.occurred_at))));
  const what = el('div', 'what');
  const amount = p.kind === 'refund' ? -p.amount_idr : p.amount_idr;
  what.append(el('div', 'amount', formatIdr(amount)));
  const meta = [p.kind === 'refund' ? 'Refund' : `${p.quantity} barang`];
  if (manyIkm) meta.push(ikmName(p.ikm_id));
  if (p.sku) meta.push(p.sku);
  what.append(el('div', 'meta', meta.join(' · ')));
  li.append(what);
  const badge = el('span', 'badge', STATE_TEXT[record.state]);
  badge.dataset.state = record.state;
  const actions = el('div', 'actions');
  actions.append(badge);
  const left = p.amount_idr - (refunded.get(record.sale_id) || 0);
  if (p.kind === 'sale' && record.state !== 'rejected' && left > 0) {
    const button = el('button', 'btn secondary refund', 'Refund');
    button.type = 'button';
    button.addEventListener('click', () => openRefund(record, left));
    actions.append(button);
  }
  li.append(actions);
  if (record.state === 'rejected') {
    const text = REASON_TEXT[record.reason] || 'Ditolak server';
    const reason = el('div', 'reason', `${text} (${record.reason})${record.detail ? `: ${record.detail}` : ''}`);
    li.append(reason);
  }
  return li;
}

// -- capture -----------------------------------------------------------------------------

/** Store a captured sale: it exists from this moment, whatever the network does. */
async function capture(fields) {
  const { profile } = app.pairing;
  const now = new Date();
  const payload = {
    schema_version: 1, sale_id: ulid(now.getTime()), kind: fields.refundOf ? 'refund' : 'sale',
    ikm_id: fields.ikm, event_id: profile.event.id, channel: 'offline', booth_id: profile.booth_id,
    amount_idr: fields.amount, quantity: fields.quantity, occurred_at: rfc3339(now),
  };
  if (fields.sku) payload.sku = fields.sku;
  if (fields.refundOf) payload.refund_of = fields.refundOf;
  const record = {
    sale_id: payload.sale_id, booth_id: profile.booth_id, payload, state: 'pending',
    reason: null, detail: null, attempts: 0, created_at: now.toISOString(), updated_at: null,
  };
  await transact(['outbox'], 'readwrite', (s) => { s.outbox.add(record); });
  return payload;
}

function readQty(input, min) {
  const text = input.value.trim();
  if (!/^\d{1,6}$/.test(text)) return null;
  const n = Number(text);
  return n >= min ? n : null;
}

function checkDay(profile) {
  const today = localDay(new Date(), profile.event.timezone);
  if (today < profile.event.starts_on || today > profile.event.ends_on) {
    return `Hari ini (${today}) di luar tanggal acara ${profile.event.starts_on} s.d. ${profile.event.ends_on}.`;
  }
  return null;
}

async function onSale(event) {
  event.preventDefault();
  const { profile } = app.pairing;
  const ikm = profile.ikm.length === 1 ? profile.ikm[0].id : $('ikm').value;
  const amount = parseAmount($('amount').value);
  const quantity = readQty($('qty'), 1);
  const sku = $('sku').value.trim();
  let problem = null;
  if (!profile.ikm.some((i) => i.id === ikm)) problem = 'Pilih IKM.';
  else if (!amount) problem = 'Isi jumlah rupiah (lebih dari nol).';
  else if (amount > profile.event.max_sale_idr) {
    problem = `Jumlah melebihi batas acara (${formatIdr(profile.event.max_sale_idr)}). Periksa angkanya.`;
  } else if (quantity === null) problem = 'Jumlah barang minimal 1.';
  else if (sku.length > 120) problem = 'Nama produk terlalu panjang.';
  else problem = checkDay(profile);
  if (problem) { notice(problem, true); $('amount').focus(); return; }
  const sale = await capture({ ikm, amount, quantity, sku });
  $('amount').value = '';
  $('qty').value = '1';
  $('sku').value = '';
  notice(`Tercatat ${formatIdr(sale.amount_idr)} × ${quantity}.`, false);
  await render();
  runSync();
}

const refund = { record: null, left: 0 };

function openRefund(record, left) {
  refund.record = record;
  refund.left = left;
  const p = record.payload;
  $('refund-what').textContent = `${clock(new Date(p.occurred_at))} · ${formatIdr(p.amount_idr)} · ` +
    `${p.quantity} barang${p.sku ? ` · ${p.sku}` : ''} (sisa bisa di-refund ${formatIdr(left)})`;
  $('refund-amount').value = groupDigits(String(left));
  $('refund-qty').value = String(p.quantity);
  $('refund-error').hidden = true;
  $('refund-dialog').showModal();
}

async function onRefund(event) {
  event.preventDefault();
  const p = refund.record.payload;
  const amount = parseAmount($('refund-amount').value);
  const quantity = readQty($('refund-qty'), 0);
  let problem = null;
  if (!amount) problem = 'Isi jumlah refund (lebih dari nol).';
  else if (amount > refund.left) problem = `Refund paling banyak ${formatIdr(refund.left)}.`;
  else if (quantity === null || quantity > p.quantity) problem = `Barang dikembalikan 0 s.d. ${p.quantity}.`;
  if (problem) { $('refund-error').textContent = problem; $('refund-error').hidden = false; return; }
  await capture({ ikm: p.ikm_id, amount, quantity, sku: p.sku, refundOf: p.sale_id });
  $('refund-dialog').close();
  notice(`Refund ${formatIdr(amount)} tercatat.`, false);
  await render();
  runSync();
}

// -- sync --------------------------------------------------------------------------------

function schedule(delayMs) {
  clearTimeout(sync.timer);
  sync.timer = setTimeout(() => { sync.timer = null; runSync(); }, delayMs);
}

function backoffMs() {
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** sync.failures);
}

async function pendingBatch(boothId) {
  const records = await boothRecords(boothId);
  return records.filter((r) => r.state === 'pending')
    .sort((a, b) => (a.sale_id < b.sale_id ? -1 : 1)).slice(0, sync.limit);
}

/** Apply per-item answers in one transaction; returns how many items were settled. */
async function settle(batch, results) {
  const now = new Date().toISOString();
  return transact(['outbox'], 'readwrite', async (s) => {
    let settled = 0;
    batch.forEach((record, i) => {
      const r = results[i];
      if (!r || (r.sale_id && r.sale_id !== record.sale_id)) return;
      const next = { ...record, attempts: record.attempts + 1, updated_at: now };
      if (r.status === 'accepted') { next.state = 'sent'; settled += 1; }
      else if (r.status === 'rejected') {
        next.state = 'rejected';
        next.reason = (r.error && r.error.reason) || 'rejected';
        next.detail = (r.error && r.error.detail) || '';
        settled += 1;
      }
      s.outbox.put(next);
    });
    return settled;
  });
}

/** One request. Returns {done} when the batch was settled, else why and how long to wait. */
async function sendBatch(batch) {
  const reply = await call('sales', {
    method: 'POST', token: app.pairing.token, body: { sales: batch.map((r) => r.payload) },
  });
  if (!reply.reached) return { retry: true, error: reply.error };
  app.lastError = '';
  if (reply.status === 401) return { auth: true };
  const results = reply.data && Array.isArray(reply.data.results) &&
    reply.data.results.length === batch.length ? reply.data.results : null;
  if (!results) {
    if (reply.status === 413 && batch.length > 1) {
      sync.limit = Math.max(1, Math.floor(batch.length / 2));
      return { done: true };
    }
    if (reply.status === 413) {
      await settle(batch, [{ status: 'rejected', error: { reason: 'body_too_large', detail: '' } }]);
      return { done: true };
    }
    return { retry: true, wait: retryAfterMs(reply.retryAfter), error: `HTTP ${reply.status}` };
  }
  const settled = await settle(batch, results);
  if (settled === batch.length) return { done: true };
  return { retry: true, wait: retryAfterMs(reply.retryAfter), error: `HTTP ${reply.status}` };
}

async function runSync() {
  if (sync.running) { sync.again = true; return; }
  if (!app.pairing || !app.pairing.profile || app.blocked) return;
  if (!navigator.onLine) { showNet(); return; }  // the online event brings us back
  sync.running = true;
  try {
    for (;;) {
      const batch = await pendingBatch(app.pairing.profile.booth_id);
      if (!batch.length) { sync.failures = 0; sync.limit = BATCH; break; }
      showSync(`Mengirim ${batch.length}…`, 'idle');
      const outcome = await sendBatch(batch);
      await render();
      if (outcome.done) { sync.failures = 0; continue; }
      if (outcome.auth) { revoked(); break; }
      if (!outcome.wait) app.lastError = outcome.error || 'network';
      sync.failures += 1;
      const delay = Math.max(outcome.wait || 0, backoffMs());
      schedule(delay);
      showSync(`Coba lagi dalam ${Math.ceil(delay / 1000)} dtk`, 'offline');
      break;
    }
  } catch (err) {
    console.error('sync failed', err);
    sync.failures += 1;
    schedule(backoffMs());
  } finally {
    sync.running = false;
    await render();
    if (sync.again) { sync.again = false; if (!sync.timer) runSync(); }
  }
}

function comeBack() {
  sync.failures = 0;
  app.lastError = '';
  clearTimeout(sync.timer);
  sync.timer = null;
  showNet();
  if (app.pairing && !app.pairing.profile) refreshProfile();
  else runSync();
}

// -- wiring ------------------------------------------------------------------------------

function stepper(input, minus, plus, min) {
  const clamp = (n) => Math.max(min, Math.min(999999, n));
  minus.addEventListener('click', () => { input.value = String(clamp((readQty(input, 0) ?? min) - 1)); });
  plus.addEventListener('click', () => { input.value = String(clamp((readQty(input, 0) ?? min) + 1)); });
  input.addEventListener('input', () => { input.value = input.value.replace(/\D/g, '').slice(0, 6); });
}

function bind() {
  $('sale-form').addEventListener('submit', (e) => { onSale(e).catch(fail); });
  $('refund-form').addEventListener('submit', (e) => { onRefund(e).catch(fail); });
  $('refund-cancel').addEventListener('click', () => $('refund-dialog').close());
  for (const id of ['amount', 'refund-amount']) {
    $(id).addEventListener('input', (e) => formatAmountField(e.target));
  }
  stepper($('qty'), $('qty-minus'), $('qty-plus'), 1);
  stepper($('refund-qty'), $('refund-qty-minus'), $('refund-qty-plus'), 0);
  $('manual-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('manual-token').value.trim();
    if (token) pairWithToken(token).catch(fail);
  });
  $('pair-retry').addEventListener('click', () => {
    const code = pairCodeFromHash();
    (code ? pairWithCode(code) : refreshProfile()).catch(fail);
  });
  $('repair').addEventListener('click', () => {
    showPair('Minta tautan pemasangan baru ke panitia, lalu buka di perangkat ini. ' +
      'Penjualan yang belum terkirim tetap tersimpan.');
  });
  $('unpair').addEventListener('click', () => {
    showPair('Buka tautan pemasangan booth lain, atau tempel tokennya di bawah. ' +
      'Penjualan yang belum terkirim tetap tersimpan.');
  });
  window.addEventListener('online', comeBack);
  window.addEventListener('offline', showNet);
  window.addEventListener('hashchange', () => {
    const code = pairCodeFromHash();
    if (code) pairWithCode(code).catch(fail);
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && !sync.timer) runSync(); });
  setInterval(() => { if (!sync.timer) runSync(); }, TICK_MS);
}

function fail(err) {
  console.error(err);
  notice(`Terjadi kesalahan di perangkat: ${err && err.message ? err.message : err}`, true);
}

async function start() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js', { scope: './' }).catch((err) => console.warn('no service worker', err));
  }
  app.db = await openDb();
  bind();
  app.pairing = (await getConfig('pairing')) || null;
  const code = pairCodeFromHash();
  if (code) await pairWithCode(code);
  else if (app.pairing && app.pairing.profile) {
    showApp();
    await render();
    refreshProfile().catch(() => {});
  } else if (app.pairing) await refreshProfile();
  else showPair('Pindai kode QR dari panitia, atau buka tautan pemasangan di perangkat ini.');
  showNet();
}

start().catch(fail);
