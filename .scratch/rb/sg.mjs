import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
const a = await gpu.requestAdapter();
console.log(a.info.subgroupMinSize, a.info.subgroupMaxSize, a.info.description);
