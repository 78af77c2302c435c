// Optimisers, gradient clipping, loss scaling, learning-rate schedules and parameter-group builders.
export * from './optimizer';
export * from './adamw';
export * from './sgd';
export * from './lars';
export * from './clip';
export * from './grad_scaler';
export * from './schedule';
export * from './param_groups';
export * from './peak-lr';
