/**
 * Binding the listening socket for `serve` and `gateway`. Node's errors ("listen
 * EADDRINUSE: address already in use 127.0.0.1:8000", "getaddrinfo ENOTFOUND x") do not
 * say which setting to change; this names --host/--port and what to do.
 */
const REASONS: Record<string, string> = {
  EADDRINUSE: 'the port is already in use (another autoglm? pick another --port, or 0 for any free one)',
  EACCES: 'permission denied (ports below 1024 need privileges; pick a --port above 1023)',
  EADDRNOTAVAIL: '--host is not an address of this machine',
  ENOTFOUND: '--host does not resolve to an address',
  EAI_AGAIN: '--host could not be resolved (DNS unavailable)',
};

export async function listenOn(listen: () => Promise<string>, where: { host: string; port: number }): Promise<string> {
  try {
    return await listen();
  } catch (e) {
    const code = (e as { code?: string }).code;
    const reason = code !== undefined ? REASONS[code] : undefined;
    if (reason === undefined) throw e;
    throw new Error(`cannot listen on --host ${where.host} --port ${where.port}: ${reason}`, { cause: e });
  }
}
