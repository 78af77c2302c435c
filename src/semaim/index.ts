export * from './config';
export * from './posembed';
export * from './vit';
export * from './decoder';
export * from './orders';
export * from './targets';
export * from './semaim';
