export * from './model-spec.js';
export { modelSpecFromConfig, loadModelSpec, readJsonFile, type ModelConfigJson } from './config.js';
export { openModelWeights, INDEX_FILE, SINGLE_FILE, type ModelWeights, type OpenModelWeightsOptions } from './sharded.js';
export { SafetensorsFile, isSupportedDtype, type TensorInfo, type RowRange } from './safetensors.js';
export * from './dtype-convert.js';
export { loadGenerationConfig, generationDefaults, type GenerationDefaults } from './generation-config.js';
export { weightLayout } from './weight-names.js';
