/**
 * Kubernetes EndpointSlices (discovery.k8s.io/v1) as workers: the few fields the gateway
 * reads, and the rule that turns a Service's slices into the set of workers to route to.
 */
import { parseWorkerUrl, type WorkerEndpoint } from '../types.js';

export interface EndpointSlicePort {
  name?: string;
  /** Absent means "all ports", which names no worker port. */
  port?: number;
  appProtocol?: string;
}

export interface EndpointSliceEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  targetRef?: { kind?: string; name?: string; namespace?: string };
}

export interface EndpointSlice {
  metadata: { name: string; resourceVersion?: string; labels?: Record<string, string> };
  addressType?: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: EndpointSliceEndpoint[] | null;
  ports?: EndpointSlicePort[] | null;
}

/** The label the EndpointSlice controller puts on every slice of a Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** The slice port used when no name is given, when a slice has more than one. */
export const DEFAULT_PORT_NAME = 'http';

export interface SliceWorkers {
  workers: WorkerEndpoint[];
  /** Why a slice or an endpoint named no worker (the last such reason), for /cluster/workers and logs. */
  skipped: string | null;
}

/**
 * The workers a Service's slices name: each endpoint that is ready and not terminating, at
 * its first address and the chosen port. A terminating pod leaves at once, before its
 * readiness probe fails, so the gateway sends it nothing new while its requests finish.
 *
 * Ids are the pod name (targetRef), else the address: stable for the pod's life. A pod in
 * two slices (dual-stack, or while the controller moves endpoints between slices) counts
 * once; slices are read in a fixed order (IPv4 before IPv6, then by name) so that the
 * address chosen does not flip from one listing to the next.
 */
export function workersFromSlices(slices: Iterable<EndpointSlice>, portName?: string): SliceWorkers {
  const ordered = [...slices].sort(
    (a, b) => (a.addressType ?? '').localeCompare(b.addressType ?? '') || a.metadata.name.localeCompare(b.metadata.name),
  );
  const byId = new Map<string, WorkerEndpoint>();
  let skipped: string | null = null;
  for (const slice of ordered) {
    const endpoints = Array.isArray(slice.endpoints) ? slice.endpoints : [];
    if (endpoints.length === 0) continue;
    const port = choosePort(Array.isArray(slice.ports) ? slice.ports : [], portName);
    if (typeof port === 'string') {
      skipped = `EndpointSlice ${slice.metadata.name}: ${port}`;
      continue;
    }
    const scheme = port.appProtocol === 'https' ? 'https' : 'http';
    for (const e of endpoints) {
      if (typeof e !== 'object' || e === null || !routable(e)) continue;
      // Parsed JSON from the API: checked, not trusted (a malformed entry must not throw in the watch).
      const address: unknown = Array.isArray(e.addresses) ? e.addresses[0] : undefined;
      const host = typeof address === 'string' && address.includes(':') ? `[${address}]` : address;
      const url = typeof address === 'string' ? parseWorkerUrl(`${scheme}://${String(host)}:${port.port}`) : null;
      if (typeof address !== 'string' || url === null) {
        skipped = `EndpointSlice ${slice.metadata.name}: endpoint ${JSON.stringify(e.addresses)} has no usable address`;
        continue;
      }
      const id = typeof e.targetRef?.name === 'string' ? e.targetRef.name : address;
      if (!byId.has(id)) byId.set(id, { id, url });
    }
  }
  return { workers: [...byId.values()], skipped };
}

/**
 * The API documents a missing `ready` as "true" (and says consumers should read it so);
 * `terminating` is checked on its own because a Service that publishes not-ready addresses
 * keeps terminating endpoints `ready`.
 */
function routable(e: EndpointSliceEndpoint): boolean {
  return e.conditions?.ready !== false && e.conditions?.terminating !== true;
}

/** The slice port that is the worker's, or why there is none. */
function choosePort(ports: readonly EndpointSlicePort[], portName: string | undefined): (EndpointSlicePort & { port: number }) | string {
  if (ports.length === 0) return 'no ports';
  const names = ports.map((p) => p.name ?? '(unnamed)').join(', ');
  const chosen =
    portName !== undefined
      ? ports.find((p) => p.name === portName)
      : (ports.find((p) => p.name === DEFAULT_PORT_NAME) ?? (ports.length === 1 ? ports[0] : undefined));
  if (chosen === undefined)
    return portName !== undefined
      ? `no port named '${portName}' (ports: ${names})`
      : `no port named '${DEFAULT_PORT_NAME}' and more than one port (${names}): name the worker port`;
  if (typeof chosen.port !== 'number') return `port '${chosen.name ?? ''}' has no number`;
  return { ...chosen, port: chosen.port };
}
