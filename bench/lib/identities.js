// The bench's identities, made with @restpipe/certs-tool: a CA, the server
// (localhost, 127.0.0.1), the load-test client "bench-client". For the
// agents-at-scale test, N client certificates over ONE shared key pair (RSA
// keys take ~100 ms each to generate): each certificate has its own CN and
// serial and the same extensions as createClientIdentity's. The certificate
// is built with node-forge; its signature is made with node:crypto (forge's
// pure-JS RSA takes ~30 ms a signature, node:crypto < 1 ms).
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';
import { createCa, createClientIdentity, createServerIdentity } from '@restpipe/certs-tool';

export const LOAD_CLIENT_NAME = 'bench-client';

/** Creates the CA, server and load-client identities and writes them where nodes, nginx and stunnel read them. */
export async function createBenchIdentities(dir) {
  const ca = await createCa({ commonName: 'RestPipe Bench CA' });
  const server = await createServerIdentity(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const client = await createClientIdentity(ca, { commonName: LOAD_CLIENT_NAME });
  const agentKey = await createClientIdentity(ca, { commonName: 'agent-key' });
  const serverDir = join(dir, 'server');
  const clientDir = join(dir, 'client');
  mkdirSync(serverDir, { recursive: true, mode: 0o700 });
  mkdirSync(clientDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(serverDir, 'restpipe.server.key.pem'), server.keyPem, { mode: 0o600 });
  writeFileSync(join(serverDir, 'restpipe.server.crt.pem'), server.certPem);
  writeFileSync(join(serverDir, 'ca.crt.pem'), ca.certPem);
  writeFileSync(join(clientDir, 'restpipe.client.key.pem'), client.keyPem, { mode: 0o600 });
  writeFileSync(join(clientDir, 'restpipe.client.crt.pem'), client.certPem);
  writeFileSync(join(clientDir, 'ca.crt.pem'), ca.certPem);
  return { dir, ca, server, client, agentKey, serverDir, clientDir };
}

/**
 * Signs `count` client certificates named `${prefix}${i}` for the public key of
 * `keyIdentity`. Returns PEM strings; all share keyIdentity.keyPem.
 */
export function signAgentCertificates(ca, keyIdentity, count, prefix = 'agent-') {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = createPrivateKey(ca.keyPem);
  const publicKey = forge.pki.certificateFromPem(keyIdentity.certPem).publicKey;
  const ski = caCert.getExtension('subjectKeyIdentifier');
  const keyIdentifier = forge.util.hexToBytes(ski.subjectKeyIdentifier);
  const notBefore = new Date(Math.floor((Date.now() - 3_600_000) / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + 30 * 86_400_000);
  const out = new Array(count);
  for (let i = 0; i < count; i++) {
    const cert = forge.pki.createCertificate();
    cert.publicKey = publicKey;
    const serial = randomBytes(16);
    serial[0] = serial[0] & 0x7f || 0x01;
    cert.serialNumber = serial.toString('hex');
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    cert.setSubject([{ name: 'commonName', value: `${prefix}${i}` }]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier },
    ]);
    cert.siginfo.algorithmOid = cert.signatureOid = forge.pki.oids.sha256WithRSAEncryption;
    cert.tbsCertificate = forge.pki.getTBSCertificate(cert);
    const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary');
    cert.signature = sign('sha256', tbs, caKey).toString('binary');
    out[i] = forge.pki.certificateToPem(cert);
  }
  return out;
}
