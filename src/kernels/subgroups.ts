/**
 * Whether an adapter's subgroups can carry a kernel that assumes at least `lanes` lanes
 * per subgroup (subgroupShuffle among 8 lanes, a subgroupAdd over an 8-lane workgroup):
 * the subgroups feature, and a minimum subgroup size of `lanes` or more (lavapipe: 8).
 */
import type { KernelRuntime } from './runtime.js';

export function hasSubgroupsOf(rt: KernelRuntime, lanes: number): boolean {
  if (!rt.ctx.features.subgroups) return false;
  const info = rt.ctx.adapter.info as GPUAdapterInfo & { subgroupMinSize?: number };
  return (info.subgroupMinSize ?? 0) >= lanes;
}
