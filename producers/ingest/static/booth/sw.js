/* Service worker of the booth app (scope /booth/).
 *
 * The app shell is precached in a versioned cache and served cache-first, so the
 * page opens with the venue Wi-Fi down. Bump VERSION whenever a shell file changes:
 * the new worker fetches the shell afresh (cache: 'reload') and deletes old caches.
 * API calls (/v1/...) are never intercepted: a sale's state must come from ingest's
 * own answer, never from a cache.
 */
'use strict';

const VERSION = 'rekap-booth-v1';
const SHELL = ['./', 'app.js', 'app.css', 'manifest.webmanifest', 'icon.svg'];
const INDEX = new URL('./', self.location).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(VERSION);
    await cache.addAll(SHELL.map((path) => new Request(path, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((n) => n.startsWith('rekap-booth-') && n !== VERSION)
      .map((n) => caches.delete(n)));
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  // Only the app's own files: the API lives outside the scope (../v1/) and passes through.
  if (!url.href.startsWith(self.registration.scope)) return;
  event.respondWith(shell(request));
});

async function shell(request) {
  const cache = await caches.open(VERSION);
  // Any navigation inside the scope is the app (its state lives in IndexedDB, not the URL).
  const key = request.mode === 'navigate' ? INDEX : request;
  const hit = await cache.match(key, { ignoreSearch: true });
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok && request.mode !== 'navigate') await cache.put(request, response.clone());
  return response;
}
