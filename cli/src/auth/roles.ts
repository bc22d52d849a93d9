/**
 * bertq's three NATS roles as nats-server configuration: the permission blocks, written once here,
 * and the users that take them, by password (the shipped deploy/nats/bertq-auth.conf, which a test
 * holds to renderAuthConf's output) or by NKey (what `bertq auth init` writes).
 *
 * With tenants, the shared `client` user gives way to one client user per tenant, who may read only
 * `bertq.v1.*.results.<tenant>.*` and `_INBOX.<tenant>.>`: the broker, not the unguessable identity,
 * then keeps one tenant's texts and vectors from another (docs/security.md, "Tenants").
 */
import { validateTenant } from '@bertq/protocol';

export const ROLES = ['client', 'worker', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** How each role's user proves who it is. */
export type Credentials =
  | { kind: 'password' } // `$BERTQ_<ROLE>_PASSWORD`, substituted by nats-server from its environment
  | {
      kind: 'nkey';
      publicKeys: Record<Role, string>;
      /** Public key of each tenant's user, by tenant name. */
      tenantKeys?: Record<string, string>;
    };

/** Inside `authorization { … }`: one permissions variable per role, with why each line is there. */
const CLIENT_PUBLISH_BLOCK = `  # client: publish jobs, read results, read config/status/metrics, discover workers.
  # It cannot terminate, cannot read anybody's jobs, cannot publish results, and touches the
  # JetStream API only through publishing jobs (the stream's ack comes back on its inbox) and reading
  # the two work consumers' positions (after a reconnect it re-asks only for jobs already delivered).
  # A tenant's users publish the same; they read only their tenant's results and inbox.
  CLIENT_PUBLISH = [
    "bertq.v1.*.jobs.high", "bertq.v1.*.jobs.bulk", "bertq.v1.*.cancel",
    "$JS.API.CONSUMER.INFO.*.high", "$JS.API.CONSUMER.INFO.*.bulk",
    "bertq.v1.*.config", "bertq.v1.*.config.*",
    "bertq.v1.*.status", "bertq.v1.*.status.*",
    "bertq.v1.*.metrics.*",
    "$SRV.PING", "$SRV.PING.bertq", "$SRV.INFO.bertq", "$SRV.INFO.bertq.*"
  ]`;

/** The shared client's permissions (left out with tenants: nats-server refuses a variable nobody uses). */
const CLIENT_BLOCK = `  CLIENT = {
    publish = { allow = $CLIENT_PUBLISH }
    subscribe = {
      allow = ["_INBOX.>", "bertq.v1.*.results.*"]
    }
  }`;

const WORKER_ADMIN_BLOCKS = `  # worker: pull jobs from the streams' consumers and ack them, read (never create, change, purge
  # or delete) the streams and consumers, publish results, serve the control endpoints (answers go to
  # the requester's inbox: allow_responses). Its own replies and pulled jobs come on
  # _BERTQ_WORKER_INBOX, which no client may read. \`bertq setup\`, run by the admin, creates the
  # streams. NATS wildcards match whole tokens, so these name every stream of the account, not only
  # BERTQ_*: give bertq an account of its own when the server serves others too.
  WORKER = {
    publish = {
      allow = [
        "bertq.v1.*.results.*", "bertq.v1.*.results.*.*",
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.*",
        "$JS.API.CONSUMER.INFO.*.*",
        "$JS.API.CONSUMER.MSG.NEXT.*.*",
        "$JS.ACK.>",
        "$SRV.PING", "$SRV.PING.bertq"
      ]
    }
    subscribe = {
      allow = [
        "_BERTQ_WORKER_INBOX.>",
        "bertq.v1.*.config", "bertq.v1.*.config.*",
        "bertq.v1.*.status", "bertq.v1.*.status.*",
        "bertq.v1.*.terminate", "bertq.v1.*.terminate.*",
        "bertq.v1.*.metrics.*",
        "bertq.v1.*.cancel",
        "$SRV.>"
      ]
    }
    allow_responses = true
  }
  # admin: everything, including terminate, \`bertq setup\` and managing (deleting, purging) the streams.
  ADMIN = {
    publish = ">"
    subscribe = ">"
  }`;

const PASSWORD_HEADER = `# bertq's three roles, enforced by the NATS server (docs/security.md explains each line).
# Passwords come from the environment of the nats-server process: nats-server substitutes $VAR.
#   BERTQ_CLIENT_PASSWORD  BERTQ_WORKER_PASSWORD  BERTQ_ADMIN_PASSWORD
# Every subject below is bertq wire protocol v1 (docs/protocol.md); \`*\` is one service name.`;

const NKEY_HEADER = `# bertq's three roles, enforced by the NATS server (docs/security.md explains each line).
# Users authenticate by NKey: the public keys are below; each seed is in <role>.nk beside this file,
# readable by its owner only. Written by \`bertq auth init\`.
# Every subject below is bertq wire protocol v1 (docs/protocol.md); \`*\` is one service name.`;

const PAD: Record<Role, string> = { client: '', worker: '', admin: ' ' };

function userLine(role: Role, credentials: Credentials): string {
  const permissions = `permissions: $${role.toUpperCase()}`;
  if (credentials.kind === 'nkey') return `    { nkey: ${credentials.publicKeys[role]}, ${permissions} }`;
  return `    { user: ${role},${PAD[role]} password: $BERTQ_${role.toUpperCase()}_PASSWORD,${PAD[role]} ${permissions} }`;
}

/** `$BERTQ_TENANT_<NAME>_PASSWORD`: the environment variable of a tenant's password. */
export function tenantPasswordVariable(tenant: string): string {
  return `BERTQ_TENANT_${validateTenant(tenant).toUpperCase().replaceAll('-', '_')}_PASSWORD`;
}

/** A tenant's client user: the client's publish rights, and reads of its own subjects only. */
function tenantLine(tenant: string, credentials: Credentials): string {
  const permissions = `permissions: { publish: { allow: $CLIENT_PUBLISH }, subscribe: { allow: ["_INBOX.${tenant}.>", "bertq.v1.*.results.${tenant}.*"] } }`;
  if (credentials.kind === 'nkey') {
    const key = credentials.tenantKeys?.[tenant];
    if (key === undefined) throw new Error(`no public key for tenant ${tenant}`);
    return `    { nkey: ${key}, ${permissions} }`;
  }
  return `    { user: ${tenant}, password: $${tenantPasswordVariable(tenant)}, ${permissions} }`;
}

/**
 * Tenant names checked (one subject token each) and unique, also once folded into their password
 * variable: `big-co` and `BIG_CO` would otherwise share one password, so either could log in as the other.
 */
export function checkTenants(tenants: readonly string[]): string[] {
  const byVariable = new Map<string, string>();
  for (const t of tenants) {
    const variable = tenantPasswordVariable(t);
    const other = byVariable.get(variable);
    if (other === t) throw new Error(`tenant ${t} is given twice`);
    if (other !== undefined)
      throw new Error(`tenants ${other} and ${t} would share the password variable $${variable}`);
    if ((ROLES as readonly string[]).includes(t)) throw new Error(`tenant ${t} would share a name with a role`);
    byVariable.set(variable, t);
  }
  return [...byVariable.values()];
}

/**
 * The whole roles file: header, permission blocks, and one user per role. With tenants, each tenant
 * gets a client user of its own and the shared `client` user is left out: a shared client may read
 * every `_INBOX.>`, where tenants' publish acks and status replies travel.
 */
export function renderAuthConf(credentials: Credentials, tenants: readonly string[] = []): string {
  const names = checkTenants(tenants);
  const roles = names.length > 0 ? ROLES.filter((r) => r !== 'client') : ROLES;
  return [
    credentials.kind === 'nkey' ? NKEY_HEADER : PASSWORD_HEADER,
    ...(names.length > 0 ? [`# Tenants: ${names.join(', ')}; each reads only its own results and inbox.`] : []),
    'authorization {',
    CLIENT_PUBLISH_BLOCK,
    ...(names.length > 0 ? [] : [CLIENT_BLOCK]),
    WORKER_ADMIN_BLOCKS,
    '  users = [',
    ...roles.map((role) => userLine(role, credentials)),
    ...names.map((tenant) => tenantLine(tenant, credentials)),
    '  ]',
    '}',
    '',
  ].join('\n');
}
