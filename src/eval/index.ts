// Evaluation: k-NN, linear probe, fine-tuning, the order ablation, and their result files.
export * from './data';
export * from './accuracy';
export * from './encoder';
export * from './features';
export * from './knn';
export * from './classifier';
export * from './linprobe';
export * from './mix';
export * from './finetune';
export * from './options';
export * from './result';
export * from './run';
export * from './ablate';
