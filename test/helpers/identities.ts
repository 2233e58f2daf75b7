/**
 * Throwaway identities made by our own certs-tool, once per test file:
 * a CA, a server identity for localhost / 127.0.0.1, client identities on
 * demand, and a second CA for "wrong CA" cases.
 */
import { createCa, createClientIdentity, createServerIdentity, type Identity } from '@restpipe/certs-tool';
import type { TlsIdentity } from '@restpipe/shared';

export interface TestPki {
  ca: Identity;
  server: TlsIdentity;
  client(name: string): Promise<TlsIdentity>;
}

let cached: Promise<TestPki> | undefined;

/** The test PKI of this file (created on first use). */
export function testPki(): Promise<TestPki> {
  cached ??= makePki();
  return cached;
}

async function makePki(): Promise<TestPki> {
  const ca = await createCa({ commonName: 'RestPipe Test CA', keyBits: 2048 });
  const server = await createServerIdentity(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
  const clients = new Map<string, Promise<TlsIdentity>>();
  return {
    ca,
    server: { key: server.keyPem, cert: server.certPem, ca: ca.certPem },
    client(name: string) {
      let id = clients.get(name);
      if (!id) {
        id = createClientIdentity(ca, { commonName: name, keyBits: 2048 }).then((c) => ({ key: c.keyPem, cert: c.certPem, ca: ca.certPem }));
        clients.set(name, id);
      }
      return id;
    },
  };
}

/** A separate CA with its own server and client identities. */
export async function foreignPki(): Promise<{ server: TlsIdentity; client(name: string): Promise<TlsIdentity> }> {
  const ca = await createCa({ commonName: 'Some Other CA', keyBits: 2048 });
  const server = await createServerIdentity(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
  return {
    server: { key: server.keyPem, cert: server.certPem, ca: ca.certPem },
    client: async (name) => {
      const c = await createClientIdentity(ca, { commonName: name, keyBits: 2048 });
      return { key: c.keyPem, cert: c.certPem, ca: ca.certPem };
    },
  };
}
