//! The Table 1 cost summary: every row computed from the built layers
//! agrees with the arithmetic on the layer sizes.

use incept_models::cost::{CSV_HEADER, conv_macs, conv_weights};
use incept_models::googlenet::INCEPTION_CONFIGS;
use incept_models::{GoogLeNet, GoogLeNetConfig, Module};

fn row<'a>(summary: &'a incept_models::cost::CostSummary, layer: &str) -> &'a incept_models::cost::CostRow {
    summary.rows.iter().chain(&summary.aux_rows).find(|r| r.layer == layer).unwrap_or_else(|| panic!("no row {layer}"))
}

#[test]
fn paper_rows_follow_table_1() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let summary = net.cost_summary(224, 224).unwrap();
    let layers: Vec<&str> = summary.rows.iter().map(|r| r.layer.as_str()).collect();
    assert_eq!(
        layers,
        [
            "conv1",
            "maxpool1",
            "lrn1",
            "conv2+conv3",
            "lrn2",
            "maxpool2",
            "inception3a",
            "inception3b",
            "maxpool3",
            "inception4a",
            "inception4b",
            "inception4c",
            "inception4d",
            "inception4e",
            "maxpool4",
            "inception5a",
            "inception5b",
            "avgpool",
            "dropout",
            "fc",
            "softmax"
        ]
    );
    let outputs: Vec<String> = summary.rows.iter().map(|r| r.output_string()).collect();
    assert_eq!(outputs[0], "112x112x64");
    assert_eq!(outputs[1], "56x56x64");
    assert_eq!(outputs[3], "56x56x192");
    assert_eq!(outputs[5], "28x28x192");
    assert_eq!(outputs[14], "7x7x832");
    assert_eq!(outputs[16], "7x7x1024");
    assert_eq!(outputs[17], "1x1x1024");
    assert_eq!(outputs[20], "1x1x1000");

    let conv1 = row(&summary, "conv1");
    assert_eq!(conv1.patch_stride.as_deref(), Some("7x7/2"));
    assert_eq!(conv1.params, 7 * 7 * 3 * 64 + 64);
    assert_eq!(conv1.macs, conv_macs(3, 64, 7, 7, 112, 112));
    let conv23 = row(&summary, "conv2+conv3");
    assert_eq!(conv23.depth, 2);
    assert_eq!(conv23.columns[1..3], [Some(64), Some(192)]);
    assert_eq!(conv23.macs, conv_macs(64, 64, 1, 1, 56, 56) + conv_macs(64, 192, 3, 3, 56, 56));
    assert_eq!(row(&summary, "dropout").kind, "dropout (40%)");
    assert_eq!(row(&summary, "avgpool").patch_stride.as_deref(), Some("7x7/1"));
}

#[test]
fn inception_rows_equal_layer_size_arithmetic() {
    for config in [GoogLeNetConfig::paper(), GoogLeNetConfig::torchvision()] {
        let net = GoogLeNet::<f32>::new(config).unwrap();
        let options = config.inception_options();
        let summary = net.cost_summary(224, 224).unwrap();
        for (i, (name, columns)) in INCEPTION_CONFIGS.iter().enumerate() {
            let side = [28, 28, 14, 14, 14, 14, 14, 7, 7][i];
            let r = row(&summary, name);
            let expected_columns = [
                columns.ch1x1,
                columns.ch3x3_reduce,
                columns.ch3x3,
                columns.ch5x5_reduce,
                columns.ch5x5,
                columns.pool_proj,
            ]
            .map(Some);
            assert_eq!(r.columns, expected_columns, "{name}");
            assert_eq!(r.output, [side, side, columns.c_out()], "{name}");
            assert_eq!(Some(r.params as usize), columns.parameter_count(options), "{name} {:?}", config.variant);
            assert_eq!(columns.macs(options, side, side), Some(r.macs), "{name} {:?}", config.variant);
        }
    }
}

#[test]
fn inception_3a_is_the_papers_128m() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let summary = net.cost_summary(224, 224).unwrap();
    let r = row(&summary, "inception3a");
    let weights = conv_weights(192, 64, 1, 1)
        + conv_weights(192, 96, 1, 1)
        + conv_weights(96, 128, 3, 3)
        + conv_weights(192, 16, 1, 1)
        + conv_weights(16, 32, 5, 5)
        + conv_weights(192, 32, 1, 1);
    assert_eq!(weights, 163_328);
    assert_eq!(r.macs, weights * 28 * 28);
    assert_eq!(r.macs / 1_000_000, 128);
}

#[test]
fn totals_equal_the_model() {
    for config in [GoogLeNetConfig::paper(), GoogLeNetConfig::torchvision()] {
        let net = GoogLeNet::<f32>::new(config).unwrap();
        let summary = net.cost_summary(224, 224).unwrap();
        let total = summary.total_params() + summary.aux_params();
        assert_eq!(total, net.num_parameters() as u64, "{:?}", config.variant);
        let no_aux = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..config }).unwrap();
        assert_eq!(summary.total_params(), no_aux.num_parameters() as u64, "{:?}", config.variant);
        assert!(no_aux.cost_summary(224, 224).unwrap().aux_rows.is_empty());
    }
    let torchvision = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).unwrap();
    assert_eq!(torchvision.cost_summary(224, 224).unwrap().total_params(), 6_624_904);
}

#[test]
fn aux_rows_describe_the_heads() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let summary = net.cost_summary(224, 224).unwrap();
    let pool = row(&summary, "aux1.pool");
    assert_eq!(pool.patch_stride.as_deref(), Some("5x5/3"));
    assert_eq!(pool.output_string(), "4x4x512");
    let fc1 = row(&summary, "aux2.fc1");
    assert_eq!(fc1.params, 2048 * 1024 + 1024);
    assert_eq!(row(&summary, "aux1.dropout").kind, "dropout (70%)");
    assert_eq!(row(&summary, "aux2.fc2").output_string(), "1x1x1000");
}

#[test]
fn gap_saving_is_51_4m_weights() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let saving = net.cost_summary(224, 224).unwrap().gap_saving().unwrap();
    assert_eq!(saving.map, [7, 7, 1024]);
    assert_eq!(saving.fc_weights, 7 * 7 * 1024 * 1024);
    assert_eq!(saving.fc_weights, 51_380_224);
}

#[test]
fn csv_header_and_rows() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let summary = net.cost_summary(224, 224).unwrap();
    let csv = summary.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("layer,type,patch_stride,output,depth,n1x1,n3x3_reduce,n3x3,n5x5_reduce,n5x5,pool_proj,params,macs")
    );
    assert_eq!(CSV_HEADER.split(',').count(), 13);
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), summary.rows.len() + summary.aux_rows.len());
    for line in &body {
        assert_eq!(line.split(',').count(), 13, "{line}");
    }
    assert_eq!(
        body[0],
        format!("conv1,convolution,7x7/2,112x112x64,1,,,,,,,9472,{}", conv_macs(3, 64, 7, 7, 112, 112))
    );
    assert!(body.iter().any(|l| l.starts_with("inception3a,inception,,28x28x256,2,64,96,128,16,32,32,163696,")));
}

#[test]
fn small_stem_summary_runs() {
    let config = GoogLeNetConfig { width: 0.25, ..GoogLeNetConfig::small(incept_models::Variant::Paper, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let summary = net.cost_summary(28, 28).unwrap();
    assert_eq!(row(&summary, "conv1").output_string(), "28x28x16");
    assert!(summary.rows.iter().all(|r| r.layer != "maxpool1"));
    assert_eq!(row(&summary, "inception3a").output[..2], [14, 14]);
    assert!(net.cost_summary(2, 2).is_err());
}
