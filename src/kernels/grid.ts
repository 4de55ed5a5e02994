/**
 * Workgroup grids for 1-D kernels: more than 65535 workgroups spill into y, and the
 * shader recovers the linear index as `gid.x + gid.y * num_workgroups.x * WG`.
 */
export function grid1d(items: number, workgroupSize: number, maxPerDim = 65535): [number, number] {
  const groups = Math.ceil(items / workgroupSize);
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}
