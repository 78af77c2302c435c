// Pre-training: the job behind `semaim pretrain` and its option table.
export * from './pretrain';
export * from './pretrain-options';
