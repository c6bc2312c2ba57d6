// Constructors for the kinds the demo's Jsonnet applications use, with the labels the
// platform's dashboards group by.  Small on purpose: read it in one sitting.
{
  labels(name, component):: {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/part-of': 'reconciler-demo',
  },

  namespace(name, labels={}):: {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: name, labels: labels },
  },

  configMap(name, data, labels):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name, labels: labels },
    data: data,
  },

  container(name, image, port):: {
    name: name,
    image: image,
    ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 10 },
    resources: {
      requests: { cpu: '50m', memory: '64Mi' },
      limits: { cpu: '250m', memory: '256Mi' },
    },
  },

  deployment(name, replicas, containers, labels):: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: labels },
    spec: {
      replicas: replicas,
      selector: { matchLabels: { 'app.kubernetes.io/name': name } },
      template: {
        metadata: { labels: labels },
        spec: { containers: containers },
      },
    },
  },

  service(name, port, labels):: {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: name, labels: labels },
    spec: {
      type: 'ClusterIP',
      selector: { 'app.kubernetes.io/name': name },
      ports: [{ name: 'http', port: port, targetPort: 'http', protocol: 'TCP' }],
    },
  },
}
