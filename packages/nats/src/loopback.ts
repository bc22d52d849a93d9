/**
 * The names of this machine's own loopback interface, in one place: a NATS URL naming one may get an
 * embedded nats-server (the worker's ensureNatsServer), and without a token the HTTP gateway answers
 * only requests whose Host names one (or its listen address: the DNS rebinding guard).
 */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];

/** Whether `host` (a bare name or address; IPv6 with or without brackets) is a loopback name. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.includes(host.toLowerCase().replace(/^\[(.*)\]$/, '$1'));
}
