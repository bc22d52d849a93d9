/**
 * bertq's three NATS roles as nats-server configuration: the permission blocks, written once here,
 * and the users that take them, by password (the shipped deploy/nats/bertq-auth.conf, which a test
 * holds to renderAuthConf's output) or by NKey (what `bertq auth init` writes).
 */

export const ROLES = ['client', 'worker', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** How each role's user proves who it is. */
export type Credentials =
  | { kind: 'password' } // `$BERTQ_<ROLE>_PASSWORD`, substituted by nats-server from its environment
  | { kind: 'nkey'; publicKeys: Record<Role, string> };

/** Inside `authorization { … }`: one permissions variable per role, with why each line is there. */
const PERMISSION_BLOCKS = `  # client: publish jobs, read results, read config/status/metrics, discover workers.
  # It cannot terminate, cannot read anybody's jobs, cannot publish results, and touches the
  # JetStream API only through publishing jobs (the stream's ack comes back on its inbox) and reading
  # the two work consumers' positions (after a reconnect it re-asks only for jobs already delivered).
  CLIENT = {
    publish = {
      allow = [
        "bertq.v1.*.jobs.high", "bertq.v1.*.jobs.bulk", "bertq.v1.*.cancel",
        "$JS.API.CONSUMER.INFO.*.high", "$JS.API.CONSUMER.INFO.*.bulk",
        "bertq.v1.*.config", "bertq.v1.*.config.*",
        "bertq.v1.*.status", "bertq.v1.*.status.*",
        "bertq.v1.*.metrics.*",
        "$SRV.PING", "$SRV.PING.bertq", "$SRV.INFO.bertq", "$SRV.INFO.bertq.*"
      ]
    }
    subscribe = {
      allow = ["_INBOX.>", "bertq.v1.*.results.*"]
    }
  }
  # worker: pull jobs from the streams' consumers and ack them, keep the streams and their consumers
  # as bertq needs them (create/update, never delete or purge), publish results, serve the control
  # endpoints (answers go to the requester's inbox: allow_responses). NATS wildcards match whole
  # tokens, so these name every stream of the account, not only BERTQ_*: give bertq an account of
  # its own when the server serves others too.
  WORKER = {
    publish = {
      allow = [
        "bertq.v1.*.results.*",
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*",
        "$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.CREATE.*.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.*.*",
        "$JS.API.CONSUMER.MSG.NEXT.*.*",
        "$JS.ACK.>",
        "$SRV.PING", "$SRV.PING.bertq"
      ]
    }
    subscribe = {
      allow = [
        "_INBOX.>",
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
  # admin: everything, including terminate and managing (deleting, purging) the streams.
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

/** The whole roles file: header, permission blocks, and one user per role. */
export function renderAuthConf(credentials: Credentials): string {
  return [
    credentials.kind === 'nkey' ? NKEY_HEADER : PASSWORD_HEADER,
    'authorization {',
    PERMISSION_BLOCKS,
    '  users = [',
    ...ROLES.map((role) => userLine(role, credentials)),
    '  ]',
    '}',
    '',
  ].join('\n');
}
