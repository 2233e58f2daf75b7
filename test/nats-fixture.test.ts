import { connectNats } from '../server/src/cluster/nats-transport.js';
import { afterEach, describe, expect, it } from 'vitest';
import { restartNatsServer, startNatsCluster, startNatsServer } from './helpers/nats.js';
import { closeAll } from './helpers/pipe.js';

afterEach(closeAll);

describe('the nats-server fixture', () => {
  it('a three-node cluster carries a message published on one node to a subscriber on another', async () => {
    const [a, , c] = await startNatsCluster(3);
    const sub = await connectNats({ servers: c!.url });
    const pub = await connectNats({ servers: a!.url });
    try {
      const got = sub.subscribe('t.x', { max: 1 });
      await sub.flush();
      // Interest crosses the routes asynchronously: publish until it arrives.
      const first = (async () => {
        for await (const m of got) return m.string();
        return undefined;
      })();
      let answer: string | undefined;
      first.then((v) => (answer = v));
      for (let i = 0; i < 200 && answer === undefined; i++) {
        pub.publish('t.x', 'hello');
        await pub.flush();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await first).toBe('hello');
    } finally {
      await sub.close();
      await pub.close();
    }
  });

  it('a server stopped and restarted listens on the same port, with its password', async () => {
    const first = await startNatsServer({ user: 'rp', password: 'secret' });
    await first.stop();
    const again = await restartNatsServer(first);
    expect(again.port).toBe(first.port);
    await expect(connectNats({ servers: again.url, user: 'rp', pass: 'wrong', reconnect: false })).rejects.toThrow(/authorization/i);
    const nc = await connectNats({ servers: again.url, user: 'rp', pass: 'secret' });
    await nc.close();
  });
});
