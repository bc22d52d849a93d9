/**
 * The shipped deployment files, checked as a cluster would take them: every Kubernetes manifest
 * against the official OpenAPI schemas (kubernetes-models' validators; KEDA's CRD schema for the
 * ScaledObject), the kustomization's references, and the hardening each one promises: no default
 * secrets, a Secret per role, non-root containers with limits and probes, NATS reachable only by
 * bertq's pods, and `bertq` arguments that the CLI really takes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Service } from 'kubernetes-models/v1/Service';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { parseAllDocuments } from 'yaml';
import Benchmark from '../src/commands/benchmark.js';
import Gateway from '../src/commands/gateway.js';
import Start from '../src/commands/start.js';

const DEPLOY = new URL('../../../deploy/', import.meta.url);
const ROOT = new URL('../../../', import.meta.url);
const read = (path: string, base = DEPLOY) => readFileSync(new URL(path, base), 'utf8');

// Manifests are untyped YAML.
type Doc = any;

const VALIDATORS: Record<string, (doc: Doc) => { validate(): void }> = {
  'apps/v1/Deployment': (d) => new Deployment(d),
  'apps/v1/StatefulSet': (d) => new StatefulSet(d),
  'batch/v1/Job': (d) => new Job(d),
  'v1/Service': (d) => new Service(d),
  'networking.k8s.io/v1/NetworkPolicy': (d) => new NetworkPolicy(d),
  'keda.sh/v1alpha1/ScaledObject': (d) => new ScaledObject(d),
};

function manifests(): Array<{ file: string; doc: Doc }> {
  return readdirSync(new URL('k8s/', DEPLOY))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(read(`k8s/${file}`), { merge: true }).map((d) => {
        assert.deepEqual(d.errors, [], `${file} is valid YAML`);
        return { file, doc: d.toJS() as Doc };
      }),
    );
}

const podSpecs = (docs: Array<{ file: string; doc: Doc }>) =>
  docs
    .filter(({ doc }) => doc.kind === 'Deployment' || doc.kind === 'StatefulSet')
    .map(({ file, doc }) => ({ file, name: doc.metadata.name as string, template: doc.spec.template }));

test('deploy - every Kubernetes manifest passes the official schema of its kind', () => {
  const docs = manifests();
  assert.ok(docs.length >= 8, `found ${docs.length} manifests`);
  for (const { file, doc } of docs) {
    const make = VALIDATORS[`${doc.apiVersion}/${doc.kind}`];
    assert.ok(make, `${file}: no validator for ${doc.apiVersion} ${doc.kind}`);
    assert.doesNotThrow(() => make(doc).validate(), `${file}: ${doc.kind} ${doc.metadata?.name}`);
  }
  // The validator does reject a broken manifest (a limit that is not a quantity).
  const broken = structuredClone(docs.find(({ doc }) => doc.kind === 'Deployment')!.doc);
  broken.spec.template.spec.containers[0].resources.limits.cpu = 'lots';
  assert.throws(() => new Deployment(broken).validate(), /quantity/);
});

test('deploy - the kustomization names files that exist, and secrets that are never in the repository', () => {
  const k = parseAllDocuments(read('kustomization.yaml'))[0]!.toJS() as Doc;
  for (const r of k.resources) assert.ok(existsSync(new URL(r, DEPLOY)), `resource ${r}`);
  for (const g of k.configMapGenerator)
    for (const f of g.files) assert.ok(existsSync(new URL(f.split('=')[1], DEPLOY)), `config file ${f}`);
  const secretFiles = k.secretGenerator.flatMap((g: Doc) => g.files.map((f: string) => f.split('=')[1]));
  assert.equal(secretFiles.length, 4);
  for (const f of secretFiles) {
    assert.match(f, /^k8s\/secrets\//);
    assert.ok(!existsSync(new URL(f, DEPLOY)), `${f} is not shipped: there is no default password`);
  }
  assert.match(read('.gitignore', ROOT), /^deploy\/k8s\/secrets\/$/m, 'and git ignores them');

  // Every secret a pod reads is generated, with its key; each pod reads only its own role's.
  const generated = new Map<string, string>(
    k.secretGenerator.map((g: Doc) => [g.name, g.files[0].split('=')[0]] as [string, string]),
  );
  const refs = new Map<string, string[]>();
  for (const { name, template } of podSpecs(manifests()))
    for (const c of template.spec.containers)
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (!ref) continue;
        assert.equal(generated.get(ref.name), ref.key, `${name} reads ${ref.name}/${ref.key}`);
        refs.set(name, [...(refs.get(name) ?? []), ref.name]);
      }
  assert.deepEqual(refs.get('bertq-worker'), ['bertq-worker']);
  // The stream is created by the admin's one-shot Job: the worker pods hold no right to change it.
  const setup = manifests().find(({ doc }) => doc.kind === 'Job')!.doc;
  assert.deepEqual(setup.spec.template.spec.containers[0].args, ['setup']);
  const setupRefs = setup.spec.template.spec.containers[0].env.flatMap((e: Doc) =>
    e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : [],
  );
  assert.deepEqual(setupRefs, ['bertq-admin']);
  assert.deepEqual(refs.get('bertq-gateway'), ['bertq-client', 'bertq-http-token']);
  assert.deepEqual(refs.get('nats')?.sort(), ['bertq-admin', 'bertq-client', 'bertq-worker']);
});

test('deploy - every container runs as non-root, without privilege escalation, with requests, limits and probes', () => {
  for (const { name, template } of podSpecs(manifests())) {
    assert.equal(template.spec.securityContext?.runAsNonRoot, true, `${name} runs as non-root`);
    for (const c of template.spec.containers) {
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}/${c.name}`);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${name}/${c.name} drops capabilities`);
      assert.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, `${name}/${c.name} memory`);
      assert.ok(c.resources?.requests?.cpu && c.resources?.limits?.cpu, `${name}/${c.name} cpu`);
      assert.ok(c.readinessProbe && c.livenessProbe, `${name}/${c.name} has probes`);
    }
  }
  assert.match(read('Dockerfile', ROOT), /^USER node$/m, 'the image is not root');
  for (const line of read('docker-compose.yml', ROOT).match(/^\s+- "[\d.:]+"$/gm) ?? [])
    assert.match(line, /"127\.0\.0\.1:/, `compose publishes on loopback only: ${line.trim()}`);
});

test('deploy - NATS takes connections only from bertq pods, and the pods carry the label', () => {
  const docs = manifests();
  const policy = docs.find(({ doc }) => doc.kind === 'NetworkPolicy' && doc.metadata.name === 'nats-ingress')!.doc;
  assert.deepEqual(policy.spec.podSelector.matchLabels, { app: 'nats' });
  const client = policy.spec.ingress.find((r: Doc) => r.ports.some((p: Doc) => p.port === 4222));
  assert.deepEqual(client.from, [{ podSelector: { matchLabels: { 'bertq-nats-client': 'true' } } }]);
  for (const { name, template } of podSpecs(docs).filter((p) => p.name !== 'nats'))
    assert.equal(template.metadata.labels['bertq-nats-client'], 'true', `${name} may reach NATS`);
  // KEDA's triggers take the account from one place, so using accounts is a one-line change.
  const scaler = docs.find(({ doc }) => doc.kind === 'ScaledObject')!.doc;
  const accounts = scaler.spec.triggers.map((t: Doc) => t.metadata.account);
  assert.deepEqual(accounts, ['$G', '$G']);
  assert.equal(read('k8s/autoscale.yaml').match(/account:/g)?.length, 1, 'set once, in the anchor');
});

test('deploy - the bertq arguments in the manifests are flags the commands take', () => {
  const commands: Record<string, { flags: Record<string, unknown> }> = {
    start: Start,
    gateway: Gateway,
    benchmark: Benchmark,
  };
  for (const { name, template } of podSpecs(manifests()).filter((p) => p.name !== 'nats'))
    for (const c of template.spec.containers) {
      const [command, ...args] = c.args as string[];
      const known = commands[command!];
      assert.ok(known, `${name}: bertq ${command}`);
      const flags = { ...known.flags, ...(Start.baseFlags as Record<string, unknown>) };
      for (const a of args.filter((x) => x.startsWith('--')))
        assert.ok(Object.hasOwn(flags, a.slice(2).split('=')[0]!), `${name}: bertq ${command} ${a}`);
      // A probe on a named port points at a port the container declares.
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
        const port = probe.httpGet.port;
        assert.ok(
          c.ports.some((p: Doc) => p.name === port || p.containerPort === port),
          `${name}: probe port ${port}`,
        );
      }
    }
});

test('deploy - the shipped roles file is the password rendering of the one set of permission blocks', async () => {
  const { renderAuthConf } = await import('../src/auth/roles.js');
  assert.equal(read('nats/bertq-auth.conf'), renderAuthConf({ kind: 'password' }));
  const keyed = renderAuthConf({ kind: 'nkey', publicKeys: { client: 'UCLIENT', worker: 'UWORKER', admin: 'UADMIN' } });
  assert.match(keyed, /\{ nkey: UWORKER, permissions: \$WORKER \}/);
  assert.doesNotMatch(keyed, /password/);
  // Tenants replace the shared client, each reading only its own results and inbox.
  const tenanted = renderAuthConf({ kind: 'password' }, ['acme', 'big-co']);
  assert.doesNotMatch(tenanted, /user: client/);
  assert.match(
    tenanted,
    /user: big-co, password: \$BERTQ_TENANT_BIG_CO_PASSWORD, .*"_INBOX\.big-co\.>", "bertq\.v1\.\*\.results\.big-co\.\*"/,
  );
  assert.throws(() => renderAuthConf({ kind: 'password' }, ['acme', 'acme']), /tenant acme is given twice/);
  assert.throws(
    () => renderAuthConf({ kind: 'password' }, ['big-co', 'BIG_CO']),
    /tenants big-co and BIG_CO would share the password variable \$BERTQ_TENANT_BIG_CO_PASSWORD/,
  );
  assert.throws(() => renderAuthConf({ kind: 'password' }, ['worker']), /share a name with a role/);
  assert.throws(() => renderAuthConf({ kind: 'password' }, ['a.b']), /tenant "a\.b" is invalid/);
});

const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) =>
  existsSync(p),
);

test('deploy - nats-server accepts every shipped configuration (one node, compose cluster, Kubernetes cluster)', {
  skip: NATS_SERVER ? false : 'needs nats-server (apt-get install nats-server)',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bertq-nats-conf-'));
  try {
    // Each as it is mounted: beside the roles file it includes.
    for (const conf of ['nats/nats-server.conf', 'nats/nats-cluster.conf', 'k8s/nats-server.conf']) {
      const name = conf.replace('/', '-');
      writeFileSync(join(dir, name), read(conf));
      writeFileSync(join(dir, 'bertq-auth.conf'), read('nats/bertq-auth.conf'));
      const check = spawnSync(NATS_SERVER!, ['-c', join(dir, name), '-t'], {
        encoding: 'utf8',
        env: {
          ...process.env,
          NATS_NAME: 'nats-1',
          POD_NAME: 'nats-0',
          BERTQ_CLIENT_PASSWORD: 'c',
          BERTQ_WORKER_PASSWORD: 'w',
          BERTQ_ADMIN_PASSWORD: 'a',
        },
      });
      assert.equal(check.status, 0, `${conf}: ${check.stderr}${check.stdout}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The cluster layouts replicate the job stream: three nodes, and the fleet asks for R3.
  assert.match(read('k8s/worker.yaml'), /BERTQ_STREAM_REPLICAS, value: "3"/);
  const statefulSet = manifests().find(({ doc }) => doc.kind === 'StatefulSet')!.doc;
  assert.equal(statefulSet.spec.replicas, 3);
  const compose = parseAllDocuments(read('compose.cluster.yml'), { merge: true })[0]!.toJS() as Doc;
  assert.deepEqual(
    Object.keys(compose.services)
      .filter((s) => s.startsWith('nats'))
      .sort(),
    ['nats', 'nats-2', 'nats-3'],
  );
  assert.equal(compose.services.worker.environment.BERTQ_STREAM_REPLICAS, '3');
});
