/**
 * A config change must not be skipped silently: a tightened policy that the watcher never
 * applies keeps the old, looser one serving with nothing counted, logged or visible in
 * `/readyz`.
 *
 * 1. Starvation: every event in the config's directory restarts the debounce, so a
 *    directory where some other file changes more often than `debounceMs` (a log, a pid
 *    or lock file, another tool's state) postpones the reload for as long as that goes
 *    on. Expected: a change is applied within a bounded time however busy the directory.
 * 2. Startup race: the config is loaded, the listeners start, and only then is the
 *    watcher installed and the "last applied" hash taken — from the file as it is *then*.
 *    A change written in between is never applied (no event comes, and a later event finds
 *    the hash unchanged). Expected: the file the watcher starts on is compared with the
 *    config that runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway } from '../helpers/gateway.js';
import { installReload } from '../../src/reload.js';
import { contentHash } from '../../src/file-watch.js';

let up: EchoUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up?.close();
});

/** `/admin` open (mode none) or gone (no route: 404). */
function yaml(adminOpen: boolean): string {
  return `
server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
routes:
${adminOpen ? `  - { id: admin, match: { pathPrefix: /admin }, upstream: "${up.url}", auth: { mode: none } }\n` : ''}  - { id: base, match: { pathPrefix: /base }, upstream: "${up.url}", auth: { mode: none } }
`;
}

async function statusWithin(url: string, want: number, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let status = 0;
  while (Date.now() < until) {
    status = (await fetch(url)).status;
    if (status === want) return status;
    await new Promise((r) => setTimeout(r, 20));
  }
  return status;
}

test('a busy config directory does not postpone a reload indefinitely', async () => {
  const gw = await startGateway(yaml(true));
  const stop = installReload(gw.gw, gw.file, { debounceMs: 50 });
  const sibling = join(dirname(gw.file), 'gateway.pid');
  let n = 0;
  const churn = setInterval(() => writeFileSync(sibling, String(n++)), 20);
  try {
    assert.equal((await fetch(gw.url + '/admin/x')).status, 200);
    writeFileSync(gw.file, yaml(false)); // the operator closes /admin
    const status = await statusWithin(gw.url + '/admin/x', 404, 1500);
    assert.equal(status, 404, 'the tightened config was not applied while another file in the directory kept changing');
  } finally {
    clearInterval(churn);
    stop();
    await gw.close();
  }
});

/**
 * The CLI passes the hash of the text it loaded (`appliedHash`, no second parse); a
 * reloader without it parses the file to compare it with what runs. Both must agree.
 */
const HASH_GIVEN = [false, true];
const applied = (given: boolean) => (given ? { appliedHash: contentHash(yaml(true)) } : {});

for (const given of HASH_GIVEN) test(`a change written after the config was loaded but before the watcher started is applied${given ? ' (hash of the loaded text given)' : ''}`, async () => {
  const gw = await startGateway(yaml(true)); // loaded: /admin open
  writeFileSync(gw.file, yaml(false)); // changed while the listeners were starting
  const stop = installReload(gw.gw, gw.file, { debounceMs: 30, ...applied(given) });
  try {
    // Even a later event in the directory does not help: the hash was taken after the change.
    writeFileSync(join(dirname(gw.file), 'other.txt'), 'x');
    const status = await statusWithin(gw.url + '/admin/x', 404, 1000);
    assert.equal(status, 404, 'the file on disk closes /admin, the running config still opens it');
  } finally {
    stop();
    await gw.close();
  }
});

for (const given of HASH_GIVEN) test(`control: the watcher starting on the file the running config came from reloads nothing${given ? ' (hash of the loaded text given)' : ''}`, async () => {
  const gw = await startGateway(yaml(true));
  const stop = installReload(gw.gw, gw.file, { debounceMs: 30, ...applied(given) });
  try {
    writeFileSync(join(dirname(gw.file), 'other.txt'), 'x');
    await new Promise((r) => setTimeout(r, 200));
    const m = await gw.gw.metrics.configReloads.get();
    assert.deepEqual(m.values.filter((v) => v.value > 0), [], 'no reload counted');
    assert.equal((await fetch(gw.url + '/admin/x')).status, 200);
  } finally {
    stop();
    await gw.close();
  }
});
