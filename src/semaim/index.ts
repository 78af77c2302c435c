// The SemAIM model: the ViT encoder, the decoder, the autoregressive orders, the targets, and loading of configs and pre-trained encoders.
export * from './config';
export * from './posembed';
export * from './vit';
export * from './decoder';
export * from './orders';
export * from './targets';
export * from './semaim';
export * from './pretrained';
export * from './timm-config';
export * from './load-model';
