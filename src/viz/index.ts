// Pictures of what a model learned: order, attention, similarity and loss maps, PNG figures, charts and the HTML run report.
export * from './colormap';
export * from './font';
export * from './canvas';
export * from './png';
export * from './images';
export * from './maps';
export * from './render';
export * from './visualize';
export * from './run-data';
export * from './svg';
export * from './report';
export * from './object-start';
export * from './pipeline';
