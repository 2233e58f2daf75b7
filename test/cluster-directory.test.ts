import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { PRESENCE_LIMITS } from '../server/src/cluster/directory.js';
import { clientRecord, natsConnection, startInstance, subjects, type DirectoryEvent, type TestInstance } from './helpers/cluster-directory.js';
import { restartNatsServer, startNatsCluster, startNatsServer } from './helpers/nats.js';
import { closeAll } from './helpers/pipe.js';

afterEach(closeAll);

const isConnection = (type: 'connected' | 'disconnected', instance?: string) => (e: DirectoryEvent) =>
  e.kind === 'connection' && e.type === type && (instance === undefined || e.instance === instance);

/** Publishes and waits until the server has it (so what follows comes after it). */
async function publish(nc: NatsConnection, payload: string | Uint8Array): Promise<void> {
  nc.publish(subjects.presence, payload);
  await nc.flush();
}

describe('the cluster directory', () => {
  it('three instances on one nats-server see each other and each other’s clients', async () => {
    const nats = await startNatsServer();
    const [a, b, c] = await Promise.all(['inst-a', 'inst-b', 'inst-c'].map((name) => startInstance(nats.url, name)));
    const all = [a!, b!, c!];
    for (const me of all) for (const other of all) if (other !== me) await me.waitInstance(other.name, 'up');

    const since = all.map((i) => i.mark());
    const recA = a!.connect('branch-01');
    b!.connect('branch-02');
    c!.connect('branch.03 zürich');
    for (const [i, me] of all.entries()) {
      for (const [client, holder] of [
        ['branch-01', 'inst-a'],
        ['branch-02', 'inst-b'],
        ['branch.03 zürich', 'inst-c'],
      ] as const) {
        if (holder === me.name) continue;
        const event = await me.waitConnection('connected', client, holder, since[i]);
        expect(event).toMatchObject({ address: '127.0.0.1:40000', instance: holder });
      }
    }
    expect(b!.dir.holderOf('branch-01')).toEqual(recA);
    expect(a!.dir.holderOf('branch-01')).toBeUndefined(); // never this instance's own
    expect(
      c!.dir
        .remoteClients()
        .map((r) => r.name)
        .sort(),
    ).toEqual(['branch-01', 'branch-02']);
    const views = c!.dir.instances().sort((x, y) => x.name.localeCompare(y.name));
    expect(views.map((v) => [v.name, v.clients])).toEqual([
      ['inst-a', 1],
      ['inst-b', 1],
    ]);
    for (const v of views) expect(v.lastSeenMs).toBeLessThan(350);

    const before = c!.mark();
    a!.disconnect('branch-01');
    await c!.waitConnection('disconnected', 'branch-01', 'inst-a', before);
    await b!.waitConnection('disconnected', 'branch-01', 'inst-a', before);
    expect(c!.dir.holderOf('branch-01')).toBeUndefined();
    expect(c!.dir.instances().find((v) => v.name === 'inst-a')?.clients).toBe(0);
    expect(c!.stats.count('cluster.presence.malformed')).toBe(0);
    expect(a!.stats.count('cluster.presence.sent')).toBeGreaterThan(2);
  });

  it('a late joiner reads the clients already connected, in pages of at most 500', async () => {
    const nats = await startNatsServer();
    const a = await startInstance(nats.url, 'inst-a');
    const names = Array.from({ length: 1234 }, (_, i) => `client-${String(i).padStart(4, '0')}`);
    for (const name of names) a.connect(name);

    const b = await startInstance(nats.url, 'inst-b');
    await b.waitForCount('1234 connected clients', isConnection('connected', 'inst-a'), names.length);
    expect(
      b.dir
        .remoteClients()
        .map((r) => r.name)
        .sort(),
    ).toEqual(names);
    expect(b.dir.holderOf('client-1233')).toEqual(a.local.get('client-1233'));
    expect(a.stats.count('cluster.presence.snapshot_pages_served')).toBeGreaterThanOrEqual(3);
    // And from then on it follows the changes.
    const since = b.mark();
    a.disconnect('client-0007');
    await b.waitConnection('disconnected', 'client-0007', 'inst-a', since);
    expect(b.dir.instances()[0]?.clients).toBe(1233);
  });

  it('pages fit the server’s max_payload, and overlong texts are cut to size', async () => {
    const nats = await startNatsServer({ maxPayload: 64 * 1024 });
    const a = await startInstance(nats.url, 'inst-a');
    for (let i = 0; i < 300; i++) {
      const rec = { ...clientRecord(`c-${i}`, 'inst-a'), agent: 'x'.repeat(i === 0 ? 5000 : 1000) };
      a.local.set(rec.name, rec);
      a.dir.localConnected(rec);
    }
    const b = await startInstance(nats.url, 'inst-b');
    await b.waitForCount('300 connected clients', isConnection('connected', 'inst-a'), 300);
    // 300 records of about 1.2 kB each: at least 6 pages of 64 KiB.
    expect(a.stats.count('cluster.presence.snapshot_pages_served')).toBeGreaterThanOrEqual(6);
    expect(a.stats.count('cluster.presence.publish_failures')).toBe(0);
    expect(b.dir.holderOf('c-0')?.agent).toBe('x'.repeat(PRESENCE_LIMITS.textChars));
    expect(b.stats.count('cluster.presence.malformed')).toBe(0);
  });

  it('pages after the first are of the gen of the first, even when the list changed meanwhile', async () => {
    const nats = await startNatsServer();
    const a = await startInstance(nats.url, 'inst-a');
    for (let i = 0; i < 700; i++) a.connect(`c-${i}`);
    const nc = await natsConnection(nats.url);
    const ask = async (body: object) => JSON.parse((await nc.request(subjects.snapshot('inst-a'), JSON.stringify(body), { timeout: 2000 })).string());

    const first = await ask({ offset: 0 });
    expect(first).toMatchObject({ gen: 700, next: 500 });
    expect(first.clients).toHaveLength(500);
    a.disconnect('c-600');
    a.connect('c-new');
    const second = await ask({ offset: 500, gen: 700 });
    expect(second.gen).toBe(700);
    expect(second.next).toBeNull();
    expect(second.clients.map((c: { name: string }) => c.name)).toContain('c-600');
    expect(second.clients).toHaveLength(200);
    // Without the gen of page 1 (or for a gen no longer kept) a page is of the current list.
    const current = await ask({ offset: 500 });
    expect(current.gen).toBe(702);
    expect(current.clients.map((c: { name: string }) => c.name)).toContain('c-new');
  });

  it('a skipped gen (a lost message) makes the others read the list again', async () => {
    const nats = await startNatsServer();
    // No heartbeats during the test: only the gen of the changes can show the loss.
    const slow = { heartbeatMs: 60_000, expireMs: 600_000 };
    const a = await startInstance(nats.url, 'inst-a', slow);
    const b = await startInstance(nats.url, 'inst-b', slow);
    a.connect('real-1');
    await b.waitConnection('connected', 'real-1', 'inst-a');
    const resyncs = b.stats.count('cluster.presence.resyncs');

    // The connect of `lost` never reaches NATS; the next change shows the gap.
    a.source.muted = true;
    a.connect('lost');
    a.source.muted = false;
    a.connect('real-2');
    await b.waitConnection('connected', 'lost', 'inst-a');
    await b.waitConnection('connected', 'real-2', 'inst-a');
    expect(b.stats.count('cluster.presence.resyncs')).toBe(resyncs + 1);
    expect(a.stats.count('cluster.presence.snapshot_pages_served')).toBe(2); // at B's start, and now
    expect(b.dir.holderOf('lost')?.instance).toBe('inst-a');

    // A forged message of the next gen is taken as it comes; one with a
    // skipped gen is not: inst-a's real list replaces the view.
    const raw = await natsConnection(nats.url);
    await publish(raw, JSON.stringify({ type: 'connected', instance: 'inst-a', gen: a.dir.gen + 1, client: clientRecord('ghost', 'inst-a') }));
    await b.waitConnection('connected', 'ghost', 'inst-a');
    const since = b.mark();
    await publish(raw, JSON.stringify({ type: 'connected', instance: 'inst-a', gen: a.dir.gen + 3, client: clientRecord('ghost-2', 'inst-a') }));
    await b.waitConnection('disconnected', 'ghost', 'inst-a', since);
    expect(b.stats.count('cluster.presence.resyncs')).toBeGreaterThan(resyncs + 1);
    expect(b.dir.holderOf('ghost-2')).toBeUndefined();
    // The view follows inst-a's real gen again.
    a.connect('real-3');
    await b.waitConnection('connected', 'real-3', 'inst-a', since);
    expect(
      b.dir
        .remoteClients()
        .map((r) => r.name)
        .sort(),
    ).toEqual(['lost', 'real-1', 'real-2', 'real-3']);
  });

  it('an instance that stops heartbeating expires, and its clients leave the other views', async () => {
    const nats = await startNatsServer();
    const [a, b, c] = await Promise.all(['inst-a', 'inst-b', 'inst-c'].map((name) => startInstance(nats.url, name)));
    await b!.waitInstance('inst-c', 'up');
    await c!.waitInstance('inst-b', 'up');
    a!.connect('a-1');
    a!.connect('a-2');
    for (const other of [b!, c!]) {
      await other.waitConnection('connected', 'a-1', 'inst-a');
      await other.waitConnection('connected', 'a-2', 'inst-a');
    }
    const since = [b!.mark(), c!.mark()];
    await a!.source.nc.close();
    for (const [i, other] of [b!, c!].entries()) {
      await other.waitInstance('inst-a', 'down', since[i]);
      await other.waitConnection('disconnected', 'a-1', 'inst-a', since[i]);
      await other.waitConnection('disconnected', 'a-2', 'inst-a', since[i]);
      expect(other.dir.holderOf('a-1')).toBeUndefined();
      expect(other.dir.instances().map((v) => v.name)).not.toContain('inst-a');
      expect(other.stats.count('cluster.presence.instances_expired')).toBe(1);
    }
    // B and C still see each other.
    expect(b!.dir.instances().map((v) => v.name)).toEqual(['inst-c']);
  });

  it('a late disconnect of an older connection does not remove a newer one', async () => {
    const nats = await startNatsServer();
    const [a, b, c] = await Promise.all(['inst-a', 'inst-b', 'inst-c'].map((name) => startInstance(nats.url, name)));
    for (const me of [a!, b!, c!]) for (const other of ['inst-a', 'inst-b', 'inst-c']) if (other !== me.name) await me.waitInstance(other, 'up');
    // Once B shows a client of A, B follows A's changes one by one (no snapshot in between).
    a!.connect('warm');
    await b!.waitConnection('connected', 'warm', 'inst-a');
    const t1 = Date.now() - 10_000;
    // Again on the same instance: the new connection is announced before the old one's end.
    a!.connect('x', t1);
    a!.connect('x', t1 + 1);
    a!.disconnect('x', t1);
    a!.connect('sync-1');
    await b!.waitConnection('connected', 'sync-1', 'inst-a');
    expect(b!.dir.holderOf('x')?.connectedAtMs).toBe(t1 + 1);
    const xEvents = b!.events.filter((e) => e.kind === 'connection' && e.name === 'x').map((e) => e.kind === 'connection' && e.type);
    expect(xEvents).toEqual(['connected', 'disconnected', 'connected']);
    expect(b!.stats.count('cluster.presence.stale_disconnects')).toBe(1);

    // Elsewhere: x moves to C, and A's disconnect of its older connection comes late.
    const since = b!.mark();
    c!.connect('x', t1 + 2);
    await b!.waitConnection('connected', 'x', 'inst-c', since);
    expect(b!.dir.holderOf('x')?.instance).toBe('inst-c');
    a!.disconnect('x', t1 + 1);
    await b!.waitConnection('disconnected', 'x', 'inst-a', since);
    expect(b!.dir.holderOf('x')).toMatchObject({ instance: 'inst-c', connectedAtMs: t1 + 2 });
    expect(b!.dir.remoteClients().filter((r) => r.name === 'x')).toHaveLength(1);
  });

  it('duplicates: the newest connection wins, the older holder is told it was replaced', async () => {
    const nats = await startNatsServer();
    const [a, b] = await Promise.all(['inst-a', 'inst-b'].map((name) => startInstance(nats.url, name)));
    await a!.waitInstance('inst-b', 'up');
    await b!.waitInstance('inst-a', 'up');
    const t = Date.now();
    a!.connect('dup', t - 5000);
    await b!.waitConnection('connected', 'dup', 'inst-a');
    b!.connect('dup', t);
    const replaced = await a!.waitFor('replaced', (e) => e.kind === 'replaced');
    expect(replaced).toEqual({ kind: 'replaced', name: 'dup', byInstance: 'inst-b' });
    a!.disconnect('dup'); // as the server does on `replaced`
    await b!.waitConnection('disconnected', 'dup', 'inst-a');
    expect(b!.events.filter((e) => e.kind === 'replaced')).toEqual([]);
    expect(a!.stats.count('cluster.presence.replaced')).toBe(1);

    // A late joiner with an older local connection learns of the newer one from the snapshot.
    const c = await startInstance(nats.url, 'inst-c', { clients: [clientRecord('dup', 'inst-c', t - 1000)] });
    expect(await c.waitFor('replaced', (e) => e.kind === 'replaced')).toEqual({ kind: 'replaced', name: 'dup', byInstance: 'inst-b' });

    // A connection here that is older (by the clocks) than one elsewhere loses at once.
    const d = await startInstance(nats.url, 'inst-d');
    await d.waitConnection('connected', 'dup', 'inst-b');
    d.connect('dup', t - 1);
    expect(d.events.filter((e) => e.kind === 'replaced')).toEqual([{ kind: 'replaced', name: 'dup', byInstance: 'inst-b' }]);

    // Same millisecond: the greater instance name is the newer.
    const since = b!.mark();
    a!.connect('tie', t);
    await b!.waitConnection('connected', 'tie', 'inst-a', since);
    b!.connect('tie', t);
    expect(await a!.waitFor('replaced tie', (e) => e.kind === 'replaced' && e.name === 'tie')).toMatchObject({ byInstance: 'inst-b' });
    expect(b!.events.filter((e) => e.kind === 'replaced')).toEqual([]);
  });

  it('drops malformed messages, counts them and keeps working', async () => {
    const nats = await startNatsServer({ maxPayload: 4 * 1024 * 1024 });
    const a = await startInstance(nats.url, 'inst-a', { expireMs: 60_000 }); // the fake instance below heartbeats by hand
    const raw = await natsConnection(nats.url);
    const good = (over: object) => JSON.stringify({ type: 'heartbeat', instance: 'x', gen: 0, clients: 0, ...over });
    const bad = [
      'not json {',
      '[1, 2]',
      'null',
      good({ instance: 'x-gen', gen: '5' }),
      good({ instance: 'x-neg', gen: -1 }),
      good({ instance: 'i'.repeat(257) }),
      good({ instance: 'x-type', type: 'goodbye' }),
      good({ instance: 42 }),
      JSON.stringify({ type: 'connected', instance: 'x-long', gen: 1, client: clientRecord('n'.repeat(257), 'x-long') }),
      JSON.stringify({ type: 'connected', instance: 'x-other', gen: 1, client: clientRecord('c', 'somebody-else') }),
      JSON.stringify({ type: 'connected', instance: 'x-noclient', gen: 1 }),
      JSON.stringify({ type: 'connected', instance: 'x-at', gen: 1, client: { ...clientRecord('c', 'x-at'), connectedAtMs: 'yesterday' } }),
      JSON.stringify({ type: 'disconnected', instance: 'x-disc', gen: 1, name: 'c', connectedAtMs: null }),
      // more than 1 MiB, otherwise good
      good({ instance: 'x-big', padding: 'p'.repeat(PRESENCE_LIMITS.messageBytes) }),
    ];
    for (const message of bad) raw.publish(subjects.presence, message);
    await raw.flush();
    // A snapshot request that is not one gets no answer.
    await expect(raw.request(subjects.snapshot('inst-a'), '{"offset":-1}', { timeout: 300 })).rejects.toThrow();
    await a.stats.waitCount('cluster.presence.malformed', bad.length + 1);
    expect(a.dir.instances()).toEqual([]);
    expect(a.events).toEqual([]);

    // A fake instance whose snapshot pages are bad: 10,000 clients, then a page with one bad record.
    let page = 0;
    const fakeClients = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `f${i}`, connectedSince: 'x', connectedAtMs: 1 }));
    raw.subscribe(subjects.snapshot('fake'), {
      callback: (_err, msg) => {
        page++;
        if (page === 1) msg.respond(JSON.stringify({ gen: 3, clients: fakeClients(10_000), next: null }));
        else msg.respond(JSON.stringify({ gen: 3, clients: [...fakeClients(2), clientRecord('z'.repeat(300), 'fake')], next: null }));
      },
    });
    await raw.flush();
    const malformed = a.stats.count('cluster.presence.malformed');
    await publish(raw, good({ instance: 'fake', gen: 3, clients: 2 }));
    await a.stats.waitCount('cluster.presence.resync_failures', 1);
    expect(a.stats.count('cluster.presence.malformed')).toBe(malformed + 1);
    expect(a.dir.instances()).toMatchObject([{ name: 'fake', clients: 0, fresh: false }]);
    // Its next heartbeat reads the list again: the good records are taken, the bad one left out.
    await publish(raw, good({ instance: 'fake', gen: 3, clients: 2 }));
    await a.waitConnection('connected', 'f1', 'fake');
    expect(
      a.dir
        .remoteClients()
        .map((r) => r.name)
        .sort(),
    ).toEqual(['f0', 'f1']);
    expect(a.dir.holderOf('f0')).toMatchObject({ instance: 'fake', address: null, serial: null, protocolVersion: null });
    expect(a.stats.count('cluster.presence.malformed')).toBe(malformed + 2);
    expect(a.dir.instances()).toMatchObject([{ name: 'fake', clients: 2, fresh: true }]);

    // And real instances still work.
    const b = await startInstance(nats.url, 'inst-b');
    b.connect('after');
    await a.waitConnection('connected', 'after', 'inst-b');
  });

  it('keeps its view while NATS is down, and reads the lists again after the reconnect', async () => {
    const first = await startNatsServer();
    const a = await startInstance(first.url, 'inst-a');
    const b = await startInstance(first.url, 'inst-b');
    a.connect('a-1');
    await b.waitConnection('connected', 'a-1', 'inst-a');

    const down = Promise.all([a, b].map((i) => new Promise((resolve) => i.source.once('down', resolve))));
    await first.stop();
    await down;
    expect(a.dir.connected).toBe(false);
    // Changes while NATS is away are not heard…
    a.connect('a-2');
    a.disconnect('a-1');
    // …and nobody expires, however long it takes (here twice the expiry).
    await sleep(700);
    expect(b.dir.instances()).toMatchObject([{ name: 'inst-a', clients: 1, fresh: false }]);
    expect(b.dir.holderOf('a-1')?.instance).toBe('inst-a');
    expect(b.events.some((e) => e.kind === 'instance' && e.state === 'down')).toBe(false);

    const since = b.mark();
    const up = Promise.all([a, b].map((i) => new Promise((resolve) => i.source.once('up', resolve))));
    await restartNatsServer(first);
    await up;
    await b.waitConnection('connected', 'a-2', 'inst-a', since);
    await b.waitConnection('disconnected', 'a-1', 'inst-a', since);
    expect(b.dir.holderOf('a-1')).toBeUndefined();
    expect(b.dir.instances()).toMatchObject([{ name: 'inst-a', clients: 1 }]);
    expect(b.dir.connected).toBe(true);
    // The presence flows again.
    b.connect('b-1');
    await a.waitConnection('connected', 'b-1', 'inst-b');
    expect(a.dir.instances()).toMatchObject([{ name: 'inst-b', clients: 1 }]);
  });

  it('directories on different nodes of a NATS cluster see each other', async () => {
    const nodes = await startNatsCluster(3);
    const all: TestInstance[] = await Promise.all(nodes.map((node, i) => startInstance(node.url, `inst-${i + 1}`)));
    for (const [i, me] of all.entries()) me.connect(`client-of-${i + 1}`);
    // Interest crosses the routes asynchronously: heartbeats and gens bring everyone in.
    for (const me of all) {
      for (const other of all) {
        if (other === me) continue;
        await me.waitConnection('connected', `client-of-${other.name.slice(5)}`, other.name);
      }
    }
    for (const me of all) {
      const views = me.dir.instances().map((v) => [v.name, v.clients]);
      expect(views.sort()).toEqual(all.filter((o) => o !== me).map((o) => [o.name, 1]));
    }
    const since = all[0]!.mark();
    all[2]!.disconnect('client-of-3');
    await all[0]!.waitConnection('disconnected', 'client-of-3', 'inst-3', since);
  });
});
