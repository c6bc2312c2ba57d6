// Constructors for the handful of kinds our applications use, with the labels the
// platform's dashboards group by.  Kept small on purpose: read it in one sitting.
{
  labels(name, component):: {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/component': component,
  },

  configMap(name, data, labels={}):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name, labels: labels },
    data: data,
  },

  container(name, image, port):: {
    name: name,
    image: image,
    ports: [{ name: 'http', containerPort: port }],
    readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10 },
    resources: {
      requests: { cpu: '50m', memory: '64Mi' },
      limits: { cpu: '250m', memory: '128Mi' },
    },
  },

  deployment(name, replicas, containers, labels):: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: labels },
    spec: {
      replicas: replicas,
      selector: { matchLabels: labels },
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
      selector: labels,
      ports: [{ name: 'http', port: port, targetPort: 'http' }],
    },
  },
}
